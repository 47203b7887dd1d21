#pragma once
/// \file client/hiredis.hpp
/// RedisClient over hiredis (0.14 and 1.x): a thread-safe pool of blocking connections with
/// finite connect and command timeouts. Link cacheaside::hiredis. Not included by
/// cacheaside.hpp.
///
/// hiredis writes with plain write(2): a process that may write to a connection the server has
/// closed should ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)), as with any hiredis program.

#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/errors.hpp>

#include <hiredis/hiredis.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/time.h>
#include <utility>
#include <vector>

namespace cacheaside {

/// Where and how HiredisClient connects. Every timeout is finite.
struct HiredisOptions {
  /// Server host name or address. Default "127.0.0.1".
  std::string host = "127.0.0.1";
  /// Server TCP port. Default 6379.
  int port = 6379;
  /// Unix socket path; when set, host and port are ignored.
  std::string unixSocket;
  /// ACL user name; empty for the default user.
  std::string user;
  /// Password (AUTH); empty for none.
  std::string password;
  /// Database number (SELECT). Default 0.
  int db = 0;
  /// Longest time to open a connection. Default 50 ms.
  std::chrono::milliseconds connectTimeout = std::chrono::milliseconds(50);
  /// Longest time for one command, or one pipeline, to be sent and answered. Default 50 ms.
  std::chrono::milliseconds commandTimeout = std::chrono::milliseconds(50);
  /// Most connections open at once. Default 8.
  std::size_t poolSize = 8;
  /// Longest wait for a pooled connection when all are busy. Default 50 ms.
  std::chrono::milliseconds poolWaitTimeout = std::chrono::milliseconds(50);
};

namespace detail {

struct HiredisContextDeleter {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct HiredisReplyDeleter {
  void operator()(void* r) const noexcept { freeReplyObject(r); }
};
using HiredisContextPtr = std::unique_ptr<redisContext, HiredisContextDeleter>;
using HiredisReplyPtr = std::unique_ptr<void, HiredisReplyDeleter>;

inline timeval toTimeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

inline Reply convertReply(const redisReply& r) {
  Reply out;
  switch (r.type) {
  case REDIS_REPLY_STRING:
#ifdef REDIS_REPLY_VERB
  case REDIS_REPLY_VERB:
#endif
#ifdef REDIS_REPLY_DOUBLE
  case REDIS_REPLY_DOUBLE:
#endif
#ifdef REDIS_REPLY_BIGNUM
  case REDIS_REPLY_BIGNUM:
#endif
    out.type = Reply::Type::String;
    out.str.assign(r.str, r.len);
    break;
  case REDIS_REPLY_STATUS:
    out.type = Reply::Type::Status;
    out.str.assign(r.str, r.len);
    break;
  case REDIS_REPLY_ERROR:
    out.type = Reply::Type::Error;
    out.str.assign(r.str, r.len);
    break;
  case REDIS_REPLY_INTEGER:
#ifdef REDIS_REPLY_BOOL
  case REDIS_REPLY_BOOL:
#endif
    out.type = Reply::Type::Integer;
    out.integer = r.integer;
    break;
  case REDIS_REPLY_ARRAY:
#ifdef REDIS_REPLY_MAP
  case REDIS_REPLY_MAP:
#endif
#ifdef REDIS_REPLY_SET
  case REDIS_REPLY_SET:
#endif
#ifdef REDIS_REPLY_PUSH
  case REDIS_REPLY_PUSH:
#endif
    out.type = Reply::Type::Array;
    out.elements.reserve(r.elements);
    for (std::size_t i = 0; i < r.elements; ++i) {
      out.elements.push_back(convertReply(*r.element[i]));
    }
    break;
  default:
    out.type = Reply::Type::Nil;
    break;
  }
  return out;
}

} // namespace detail

/// A RedisClient over a pool of hiredis connections. Thread-safe. Connections open lazily, up to
/// poolSize; one that fails (I/O error, timeout, protocol error) is closed and replaced on next
/// use, because a hiredis context is unusable after such an error, and one the server closed
/// while it was idle is replaced before it is used.
class HiredisClient final : public RedisClient {
public:
  /// Stores the options; connects on first use. Throws std::invalid_argument for a zero pool
  /// size or a non-positive timeout.
  explicit HiredisClient(HiredisOptions options) : options_(std::move(options)) {
    if (options_.poolSize == 0) {
      throw std::invalid_argument("cacheaside: HiredisOptions::poolSize must be positive");
    }
    if (options_.connectTimeout.count() <= 0 || options_.commandTimeout.count() <= 0 ||
        options_.poolWaitTimeout.count() < 0) {
      throw std::invalid_argument("cacheaside: HiredisOptions timeouts must be positive");
    }
    idle_.reserve(options_.poolSize); // so that returning a connection never allocates
  }

  HiredisClient(const HiredisClient&) = delete;
  HiredisClient& operator=(const HiredisClient&) = delete;

  /// Sends one command. Throws ConnectionError or TimeoutError on transport failure, and
  /// ConnectionError when a new connection's AUTH or SELECT is refused.
  Reply command(const Command& command) override {
    Borrowed conn(*this);
    auto& [args, lens] = argvBuffers();
    toArgv(command.argv, args, lens);
    errno = 0;
    detail::HiredisReplyPtr reply(
        redisCommandArgv(conn.get(), static_cast<int>(args.size()), args.data(), lens.data()));
    if (!reply) {
      fail(conn.get(), errno);
    }
    return detail::convertReply(*static_cast<redisReply*>(reply.get()));
  }

  /// Sends the commands back to back and reads their replies: one round trip.
  std::vector<Reply> pipeline(const std::vector<Command>& commands) override {
    Borrowed conn(*this);
    auto& [args, lens] = argvBuffers();
    for (const Command& command : commands) {
      toArgv(command.argv, args, lens);
      if (redisAppendCommandArgv(conn.get(), static_cast<int>(args.size()), args.data(),
                                 lens.data()) != REDIS_OK) {
        fail(conn.get(), errno);
      }
    }
    std::vector<Reply> replies;
    replies.reserve(commands.size());
    for (std::size_t i = 0; i < commands.size(); ++i) {
      void* raw = nullptr;
      errno = 0;
      if (redisGetReply(conn.get(), &raw) != REDIS_OK || raw == nullptr) {
        fail(conn.get(), errno);
      }
      detail::HiredisReplyPtr reply(raw);
      replies.push_back(detail::convertReply(*static_cast<redisReply*>(raw)));
    }
    return replies;
  }

  /// The options the client was built with.
  const HiredisOptions& options() const noexcept { return options_; }

private:
  // A connection borrowed from the pool for one call; returned, or closed if it failed.
  class Borrowed {
  public:
    explicit Borrowed(HiredisClient& owner) : owner_(owner), ctx_(owner.borrow()) {}
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;
    ~Borrowed() { owner_.giveBack(std::move(ctx_)); }
    redisContext* get() const noexcept { return ctx_.get(); }

  private:
    HiredisClient& owner_;
    detail::HiredisContextPtr ctx_;
  };

  // Per-thread argument arrays for hiredis, reused so that a command allocates none.
  static std::pair<std::vector<const char*>, std::vector<std::size_t>>& argvBuffers() {
    thread_local std::pair<std::vector<const char*>, std::vector<std::size_t>> buffers;
    return buffers;
  }

  static void toArgv(const Argv& argv, std::vector<const char*>& args,
                     std::vector<std::size_t>& lens) {
    args.clear();
    lens.clear();
    for (std::string_view a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
  }

  static bool isTimeout(const redisContext* c, int savedErrno) {
#ifdef REDIS_ERR_TIMEOUT
    if (c->err == REDIS_ERR_TIMEOUT) {
      return true;
    }
#endif
    return c->err == REDIS_ERR_IO && (savedErrno == EAGAIN || savedErrno == EWOULDBLOCK ||
                                      savedErrno == ETIMEDOUT || savedErrno == EINPROGRESS);
  }

  [[noreturn]] void fail(redisContext* c, int savedErrno) const {
    const std::string where = endpoint();
    if (c->err == 0) {
      throw ConnectionError("cacheaside: redis " + where + ": no reply");
    }
    if (isTimeout(c, savedErrno)) {
      throw TimeoutError("cacheaside: redis " + where + ": timed out (" + c->errstr + ")");
    }
    throw ConnectionError("cacheaside: redis " + where + ": " + c->errstr);
  }

  std::string endpoint() const {
    return options_.unixSocket.empty() ? options_.host + ":" + std::to_string(options_.port)
                                       : options_.unixSocket;
  }

  detail::HiredisContextPtr connect() {
    const timeval connectTv = detail::toTimeval(options_.connectTimeout);
    errno = 0;
    detail::HiredisContextPtr ctx(
        options_.unixSocket.empty()
            ? redisConnectWithTimeout(options_.host.c_str(), options_.port, connectTv)
            : redisConnectUnixWithTimeout(options_.unixSocket.c_str(), connectTv));
    if (!ctx) {
      throw ConnectionError("cacheaside: redis " + endpoint() + ": cannot allocate a context");
    }
    if (ctx->err != 0) {
      fail(ctx.get(), errno);
    }
    const timeval commandTv = detail::toTimeval(options_.commandTimeout);
    if (redisSetTimeout(ctx.get(), commandTv) != REDIS_OK) {
      fail(ctx.get(), errno);
    }
    if (!options_.password.empty()) {
      Argv auth{"AUTH"};
      if (!options_.user.empty()) {
        auth.push_back(options_.user);
      }
      auth.push_back(options_.password);
      handshake(ctx.get(), auth, "AUTH");
    }
    if (options_.db != 0) {
      const std::string db = std::to_string(options_.db);
      handshake(ctx.get(), {"SELECT", db}, "SELECT");
    }
    return ctx;
  }

  void handshake(redisContext* c, const Argv& argv, const char* what) const {
    std::vector<const char*> args;
    std::vector<std::size_t> lens;
    toArgv(argv, args, lens);
    errno = 0;
    detail::HiredisReplyPtr reply(
        redisCommandArgv(c, static_cast<int>(args.size()), args.data(), lens.data()));
    if (!reply) {
      fail(c, errno);
    }
    const auto* r = static_cast<const redisReply*>(reply.get());
    if (r->type == REDIS_REPLY_ERROR) {
      // The connection is unusable: a connection failure, which the cache absorbs.
      throw ConnectionError("cacheaside: redis " + endpoint() + ": " + what +
                            " failed: " + std::string(r->str, r->len));
    }
  }

  detail::HiredisContextPtr borrow() {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto deadline = std::chrono::steady_clock::now() + options_.poolWaitTimeout;
    while (idle_.empty() && open_ >= options_.poolSize) {
      if (available_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
          open_ >= options_.poolSize) {
        throw PoolExhaustedError("cacheaside: redis " + endpoint() + ": all " +
                                 std::to_string(options_.poolSize) + " pooled connections busy");
      }
    }
    while (!idle_.empty()) {
      detail::HiredisContextPtr ctx = std::move(idle_.back());
      idle_.pop_back();
      if (stillOpen(*ctx)) {
        return ctx;
      }
      --open_; // closed by the server while idle (restart, timeout, proxy): replace it
    }
    ++open_;
    lock.unlock();
    try {
      return connect();
    } catch (...) {
      lock.lock();
      --open_;
      lock.unlock();
      available_.notify_one();
      throw;
    }
  }

  // An idle connection has nothing to read: readable means the server closed it (EOF) or sent
  // something unasked, and either way it must not carry the next command.
  static bool stillOpen(const redisContext& c) noexcept {
    pollfd pfd{};
    pfd.fd = c.fd;
    pfd.events = POLLIN;
    return ::poll(&pfd, 1, 0) == 0;
  }

  void giveBack(detail::HiredisContextPtr ctx) noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (ctx->err != 0) {
        --open_;
      } else {
        idle_.push_back(std::move(ctx));
      }
    }
    available_.notify_one();
  }

  const HiredisOptions options_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<detail::HiredisContextPtr> idle_;
  std::size_t open_ = 0;
};

} // namespace cacheaside
