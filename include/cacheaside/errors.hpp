#pragma once
/// \file errors.hpp
/// The exception tree. Every exception the library throws derives from cacheaside::Error, except
/// std::invalid_argument for a bad argument (an empty key, invalid options).

#include <stdexcept>
#include <string>

namespace cacheaside {

/// Root of the library's exceptions.
class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Redis could not be reached, closed the connection, or broke the protocol.
class ConnectionError : public Error {
public:
  using Error::Error;
};

/// Connecting, borrowing a pooled connection, or a command took longer than its timeout.
class TimeoutError : public ConnectionError {
public:
  using ConnectionError::ConnectionError;
};

/// Every pooled connection was busy for longer than the pool's wait timeout: the process has
/// more concurrent calls than connections. A local condition, not a Redis failure: the cache
/// counts it apart and never opens its circuit breaker for it.
class PoolExhaustedError : public TimeoutError {
public:
  using TimeoutError::TimeoutError;
};

/// Redis answered a command with an error reply (for example WRONGTYPE).
class ReplyError : public Error {
public:
  using Error::Error;
};

/// A caller waited for another caller's load longer than its wait budget
/// (thrown only under WaitTimeoutPolicy::Throw).
class LockTimeoutError : public Error {
public:
  using Error::Error;
};

/// The stored entry for a key cannot answer this call (for example a cached "not found" read
/// through a loader that cannot return "not found").
class EntryError : public Error {
public:
  using Error::Error;
};

} // namespace cacheaside
