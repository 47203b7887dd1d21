#pragma once
/// \file store/scripts.hpp
/// The Lua scripts behind the leases. Every key a script touches shares the user key's hash tag,
/// so each runs in one Redis Cluster slot. The lease for a missing value is a record of kind
/// Lease stored at the value key itself; the lease for refreshing a value that is still served
/// lives beside it (Keys::refreshLease). Every write is conditional on the caller's token, so a
/// holder whose lease was invalidated, overwritten or expired can change nothing.

#include <cacheaside/store/script.hpp>

#include <string>

namespace cacheaside::store::scripts {

/// KEYS[1] value key. ARGV[1] lease record, ARGV[2] lease ms. The lookup for a Redis without
/// SET ... NX ... GET (before 7.0): returns {record, pttl} when the key holds something, or
/// stores the lease and returns nil.
inline const Script& lookup() {
  static const Script script(R"lua(
local v = redis.call('GET', KEYS[1])
if v then
  return {v, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
)lua");
  return script;
}

/// Lua that the write scripts start with: store(key, record, ms, at) stores record for ms
/// milliseconds and, when at (a byte offset) is given, writes there the key's expiry by the
/// server's clock (ms since the Unix epoch, 8 bytes little-endian): the record's expiry stamp
/// (codec/envelope.hpp). SETRANGE stamps in place, without copying the record in Lua; the
/// server's struct library packs the 8 bytes (a Lua loop of string.char cost 1 µs more per
/// write). TIME before a write needs script effects replication, the default since Redis 5.
inline const char* storeFunction() noexcept {
  return R"lua(
local function store(key, record, ms, at)
  redis.call('SET', key, record, 'PX', ms)
  if at then
    local t = redis.call('TIME')
    local e = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ms)
    redis.call('SETRANGE', key, at, struct.pack('<I8', e))
  end
end
)lua";
}

/// KEYS[1] key. ARGV[1] token, ARGV[2] record, ARGV[3] ms, ARGV[4] (optional) where the record
/// takes its expiry stamp. Stores the record if the key still holds the token; returns 1, or 0
/// (invalidated, overwritten or expired meanwhile). Also turns a refresh lease into a fail-safe
/// throttle marker.
inline const Script& fill() {
  static const Script script(std::string(storeFunction()) + R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  store(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
  return 1
end
return 0
)lua");
  return script;
}

/// KEYS[1] value key, KEYS[2] refresh lease. ARGV[1] record, ARGV[2] ms, ARGV[3] (optional)
/// where the record takes its expiry stamp. An unconditional write: drops the refresh lease
/// (fencing a refresh in flight) and stores the record; returns 1.
inline const Script& set() {
  static const Script script(std::string(storeFunction()) + R"lua(
redis.call('DEL', KEYS[2])
store(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
return 1
)lua");
  return script;
}

/// KEYS[1] key. ARGV[1] token. Deletes the key if it still holds the token; returns 1 or 0.
inline const Script& release() {
  static const Script script(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
)lua");
  return script;
}

/// KEYS[1] value key. ARGV[1] SHA-1 of an undecodable record, ARGV[2] lease record, ARGV[3]
/// lease ms. Replaces those exact bytes (or nothing) with the lease and returns nil; otherwise
/// returns what the key holds now.
inline const Script& takeover() {
  static const Script script(R"lua(
local v = redis.call('GET', KEYS[1])
if (not v) or redis.sha1hex(v) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return false
end
return v
)lua");
  return script;
}

/// KEYS[1] value key, KEYS[2] refresh lease. ARGV[1] token, ARGV[2] lease ms, ARGV[3] the value's
/// PTTL when the caller read it; or, for a record with an expiry stamp, ARGV[3] the stamp's 8
/// bytes as read and ARGV[4] their offset. Takes the refresh lease; returns 1 when taken, 0 when
/// someone holds it (or a fail-safe throttle does), -1 when the value was refreshed since the
/// caller read it (its stamp, or its PTTL, grew), -2 when the value is gone (then a lookup's
/// value lease decides who loads). While refreshing, the value is kept for at least the lease's
/// time, so that it cannot expire under the refresh and let a second caller load it through
/// the value lease.
inline const Script& takeRefresh() {
  static const Script script(R"lua(
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
local ttl = redis.call('PTTL', KEYS[1])
local refreshed
if ARGV[4] then
  refreshed = redis.call('GETRANGE', KEYS[1], ARGV[4], tonumber(ARGV[4]) + 7) ~= ARGV[3]
else
  refreshed = ttl > tonumber(ARGV[3])
end
if ttl == -2 or refreshed then
  redis.call('DEL', KEYS[2])
  return ttl == -2 and -2 or -1
end
if ttl >= 0 and ttl < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
)lua");
  return script;
}

/// KEYS[1] value key, KEYS[2] refresh lease. ARGV[1] token, ARGV[2] record, ARGV[3] ms, ARGV[4]
/// (optional) where the record takes its expiry stamp. Stores the refreshed record and drops
/// the refresh lease if that lease still holds the token; returns 1 or 0.
inline const Script& refreshFill() {
  static const Script script(std::string(storeFunction()) + R"lua(
if redis.call('GET', KEYS[2]) == ARGV[1] then
  store(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
)lua");
  return script;
}

/// KEYS[1] lease key, KEYS[2] (optional) the value a refresh keeps alive. ARGV[1] token,
/// ARGV[2] ms. Extends the lease if it still holds the token, and the value's TTL to at least
/// as long; returns 1 or 0.
inline const Script& renew() {
  static const Script script(R"lua(
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if KEYS[2] then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl >= 0 and ttl < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
end
return 1
)lua");
  return script;
}

/// Every script above, for finding one by its SHA-1 (the NOSCRIPT fallback).
inline const Script* const* all() noexcept {
  static const Script* const list[] = {&lookup(),      &fill(),     &set(),
                                       &release(),     &takeover(), &takeRefresh(),
                                       &refreshFill(), &renew(),    nullptr};
  return list;
}

} // namespace cacheaside::store::scripts
