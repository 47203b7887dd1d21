#pragma once
/// \file near/hiredis_feed.hpp
/// HiredisInvalidationFeed: Redis server-assisted client-side caching over RESP2 (hiredis 0.14
/// and 1.x), on one dedicated connection and thread. The connection turns tracking on in
/// broadcasting mode for the caches' key prefixes, redirected to itself, then SUBSCRIBEs to
/// __redis__:invalidate:
///
///     CLIENT TRACKING on REDIRECT <its own id> BCAST PREFIX <ns>:{ ...
///     SUBSCRIBE __redis__:invalidate
///
/// In BCAST mode Redis reports every change to a key under a prefix, whoever made it and whoever
/// read it, so the pooled data connections need no tracking of their own (OPTIN would need
/// CLIENT CACHING yes before every read on every pooled connection, and a redirect per
/// connection). The feed PINGs every pingInterval; a PING unanswered after lagLimit, or any
/// connection failure, reports down() and reconnects after reconnectPause. Link
/// cacheaside::hiredis.

#include <cacheaside/client/hiredis.hpp>
#include <cacheaside/detail/fork_generation.hpp>
#include <cacheaside/near/invalidation.hpp>
#include <cacheaside/store/keys.hpp>

#include <hiredis/hiredis.h>

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cacheaside::near {

/// How a HiredisInvalidationFeed connects and watches its connection.
struct HiredisFeedOptions {
  /// Where to connect: host, port or unixSocket, user, password and connectTimeout are used
  /// (tracking ignores the database number).
  HiredisOptions redis;
  /// The key namespaces of the caches that will attach (CacheOptions::keyNamespace). At least
  /// one.
  std::vector<std::string> namespaces;
  /// How often the feed checks its connection with a PING. Positive; default 100 ms.
  std::chrono::milliseconds pingInterval = std::chrono::milliseconds(100);
  /// A PING unanswered for this long counts as a lost feed. Positive; default 50 ms.
  std::chrono::milliseconds lagLimit = std::chrono::milliseconds(50);
  /// Pause before reconnecting after a loss. Positive; default 100 ms.
  std::chrono::milliseconds reconnectPause = std::chrono::milliseconds(100);
};

/// What a feed has done since it was built.
struct FeedCounters {
  /// Keys reported invalidated.
  std::uint64_t keys = 0;
  /// Flush-everything messages (FLUSHALL, FLUSHDB).
  std::uint64_t flushes = 0;
  /// Times the feed came up (subscribed).
  std::uint64_t ups = 0;
  /// Times the feed went down (connection lost, refused or lagging).
  std::uint64_t downs = 0;
};

/// An InvalidationFeed over one Redis server. Starts its thread at construction.
class HiredisInvalidationFeed final : public InvalidationFeed {
public:
  /// Starts connecting. Throws std::invalid_argument for options out of range, std::system_error
  /// when the thread or its wake-up pipe cannot be made.
  explicit HiredisInvalidationFeed(HiredisFeedOptions options)
      : options_(std::move(options)), generation_(detail::currentForkGeneration()) {
    using std::chrono::milliseconds;
    if (options_.namespaces.empty()) {
      throw std::invalid_argument("cacheaside: HiredisFeedOptions::namespaces must not be empty");
    }
    if (options_.pingInterval <= milliseconds::zero() ||
        options_.lagLimit <= milliseconds::zero() ||
        options_.reconnectPause <= milliseconds::zero() ||
        options_.redis.connectTimeout <= milliseconds::zero()) {
      throw std::invalid_argument("cacheaside: HiredisFeedOptions durations must be positive");
    }
    for (const auto& ns : options_.namespaces) {
      prefixes_.push_back(trackingPrefix(ns));
    }
    // Redis refuses a prefix given twice; distinct namespaces never overlap (see trackingPrefix).
    std::sort(prefixes_.begin(), prefixes_.end());
    prefixes_.erase(std::unique(prefixes_.begin(), prefixes_.end()), prefixes_.end());
    if (::pipe(wake_) != 0) {
      throw std::system_error(errno, std::system_category(), "cacheaside: feed pipe");
    }
    for (const int fd : wake_) {
      (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
      (void)::fcntl(fd, F_SETFL, O_NONBLOCK);
    }
    thread_ = std::thread([this] { run(); });
  }

  HiredisInvalidationFeed(const HiredisInvalidationFeed&) = delete;
  HiredisInvalidationFeed& operator=(const HiredisInvalidationFeed&) = delete;

  /// Stops the thread and closes the connection. Every listener must have detached. In a forked
  /// child (which has no feed thread) it only closes the pipe.
  ~HiredisInvalidationFeed() override {
    if (detail::currentForkGeneration() != generation_) {
      // The thread exists only in the parent: neither join nor detach it, let its handle go.
      (void)new std::thread(std::move(thread_));
    } else {
      stopping_.store(true);
      const char b = 1;
      (void)!::write(wake_[1], &b, 1);
      { std::lock_guard<std::mutex> lock(stateMutex_); }
      stateChanged_.notify_all();
      thread_.join();
    }
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

  void attach(std::string_view prefix, InvalidationListener& listener) override {
    if (std::find(prefixes_.begin(), prefixes_.end(), prefix) == prefixes_.end()) {
      throw std::invalid_argument("cacheaside: the invalidation feed does not track the prefix '" +
                                  detail::printableKey(prefix) +
                                  "': add its namespace to HiredisFeedOptions::namespaces");
    }
    std::lock_guard<std::mutex> lock(listenersMutex_);
    listeners_.push_back({std::string(prefix), &listener});
    if (up_.load()) {
      listener.up();
      listener.confirmed(Clock::time_point(Clock::duration(confirmedAt_.load())));
    }
  }

  void detach(InvalidationListener& listener) override {
    std::lock_guard<std::mutex> lock(listenersMutex_);
    listeners_.erase(std::remove_if(listeners_.begin(), listeners_.end(),
                                    [&](const Entry& e) { return e.listener == &listener; }),
                     listeners_.end());
  }

  /// Whether the feed is subscribed now.
  bool isUp() const noexcept { return up_.load(); }

  /// Waits until the feed is up, for at most timeout; returns whether it is.
  bool waitUntilUp(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(stateMutex_);
    return stateChanged_.wait_for(lock, timeout, [&] { return up_.load(); });
  }

  /// The feed connection's client id while up (for CLIENT KILL ID in tests), else 0.
  long long clientId() const noexcept { return clientId_.load(); }

  /// Counters so far.
  FeedCounters counters() const noexcept {
    FeedCounters c;
    c.keys = keys_.load(std::memory_order_relaxed);
    c.flushes = flushes_.load(std::memory_order_relaxed);
    c.ups = ups_.load(std::memory_order_relaxed);
    c.downs = downs_.load(std::memory_order_relaxed);
    return c;
  }

private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string prefix;
    InvalidationListener* listener;
  };
  struct Lost : std::runtime_error {
    using std::runtime_error::runtime_error;
  };

  void run() {
    while (!stopping_.load()) {
      try {
        session();
      } catch (const std::exception&) {
        // Lost, refused or lagging: reported below, retried after the pause.
      }
      setDown();
      std::unique_lock<std::mutex> lock(stateMutex_);
      stateChanged_.wait_for(lock, options_.reconnectPause, [&] { return stopping_.load(); });
    }
  }

  void session() {
    const HiredisOptions& r = options_.redis;
    const auto connectBy = Clock::now() + r.connectTimeout;
    timeval tv{};
    tv.tv_sec = static_cast<long>(r.connectTimeout.count() / 1000);
    tv.tv_usec = static_cast<long>((r.connectTimeout.count() % 1000) * 1000);
    detail::HiredisContextPtr ctx(r.unixSocket.empty()
                                      ? redisConnectWithTimeout(r.host.c_str(), r.port, tv)
                                      : redisConnectUnixWithTimeout(r.unixSocket.c_str(), tv));
    if (!ctx || ctx->err != 0) {
      throw Lost("connect failed");
    }
    (void)::fcntl(ctx->fd, F_SETFD, FD_CLOEXEC);
    redisContext* c = ctx.get();
    if (!r.password.empty()) {
      Argv auth{"AUTH"};
      if (!r.user.empty()) {
        auth.push_back(r.user);
      }
      auth.push_back(r.password);
      expectOk(exchange(c, auth, connectBy));
    }
    const Reply id = exchange(c, {"CLIENT", "ID"}, connectBy);
    if (id.type != Reply::Type::Integer) {
      throw Lost("CLIENT ID failed");
    }
    const std::string idText = std::to_string(id.integer);
    Argv tracking{"CLIENT", "TRACKING", "on", "REDIRECT", idText, "BCAST"};
    for (const auto& p : prefixes_) {
      tracking.push_back("PREFIX");
      tracking.push_back(p);
    }
    expectOk(exchange(c, tracking, connectBy));
    // Changes before the subscription go unreported, but up() forgets everything read before.
    const auto subscribing = Clock::now();
    const Reply subscribed = exchange(c, {"SUBSCRIBE", "__redis__:invalidate"}, connectBy);
    if (subscribed.type != Reply::Type::Array || subscribed.elements.empty() ||
        subscribed.elements[0].str != "subscribe") {
      throw Lost("SUBSCRIBE failed");
    }
    clientId_.store(id.integer);
    setUp();
    confirm(subscribing);
    auto nextPing = Clock::now() + options_.pingInterval;
    std::optional<Clock::time_point> pingSent;
    // The reader may hold messages already: handle them before waiting for more bytes.
    const auto drain = [&] {
      for (;;) {
        void* raw = nullptr;
        if (redisGetReplyFromReader(c, &raw) != REDIS_OK) {
          throw Lost("protocol error");
        }
        if (raw == nullptr) {
          return;
        }
        const detail::HiredisReplyPtr owned(raw);
        const auto& reply = *static_cast<const redisReply*>(raw);
        if (isPong(reply)) {
          confirm(*pingSent);
          pingSent.reset();
          nextPing = Clock::now() + options_.pingInterval;
        } else {
          dispatch(reply);
        }
      }
    };
    drain();
    while (!stopping_.load()) {
      const auto now = Clock::now();
      if (pingSent && now - *pingSent >= options_.lagLimit) {
        throw Lost("PING unanswered");
      }
      if (!pingSent && now >= nextPing) {
        append(c, {"PING"});
        flush(c, now + options_.lagLimit);
        pingSent = now;
      }
      const auto until = pingSent ? *pingSent + options_.lagLimit : nextPing;
      pollfd fds[2] = {{c->fd, POLLIN, 0}, {wake_[0], POLLIN, 0}};
      const auto ms = std::max<long long>(
          0, std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count());
      const int ready = ::poll(fds, 2, static_cast<int>(ms));
      if (ready < 0 && errno != EINTR) {
        throw Lost("poll failed");
      }
      if (ready <= 0 || (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) == 0) {
        continue;
      }
      if (redisBufferRead(c) != REDIS_OK) {
        throw Lost("read failed");
      }
      drain();
    }
  }

  static bool isPong(const redisReply& r) {
    return r.type == REDIS_REPLY_ARRAY && r.elements >= 1 &&
           r.element[0]->type == REDIS_REPLY_STRING &&
           std::string_view(r.element[0]->str, r.element[0]->len) == "pong";
  }

  // ["message", "__redis__:invalidate", [keys...] or nil]
  void dispatch(const redisReply& r) {
    if (r.type != REDIS_REPLY_ARRAY || r.elements != 3 ||
        std::string_view(r.element[0]->str == nullptr ? "" : r.element[0]->str,
                         r.element[0]->str == nullptr ? 0 : r.element[0]->len) != "message") {
      return;
    }
    const redisReply& payload = *r.element[2];
    std::lock_guard<std::mutex> lock(listenersMutex_);
    if (payload.type == REDIS_REPLY_ARRAY) {
      for (std::size_t i = 0; i < payload.elements; ++i) {
        const redisReply& k = *payload.element[i];
        const std::string_view key(k.str == nullptr ? "" : k.str, k.str == nullptr ? 0 : k.len);
        keys_.fetch_add(1, std::memory_order_relaxed);
        for (const Entry& e : listeners_) {
          if (key.substr(0, e.prefix.size()) == e.prefix) {
            e.listener->invalidated(key);
          }
        }
      }
    } else {
      flushes_.fetch_add(1, std::memory_order_relaxed);
      for (const Entry& e : listeners_) {
        e.listener->flushed();
      }
    }
  }

  void setUp() {
    {
      std::lock_guard<std::mutex> lock(listenersMutex_);
      up_.store(true);
      ups_.fetch_add(1, std::memory_order_relaxed);
      for (const Entry& e : listeners_) {
        e.listener->up();
      }
    }
    { std::lock_guard<std::mutex> lock(stateMutex_); }
    stateChanged_.notify_all();
  }

  void confirm(Clock::time_point asOf) {
    std::lock_guard<std::mutex> lock(listenersMutex_);
    confirmedAt_.store(asOf.time_since_epoch().count());
    for (const Entry& e : listeners_) {
      e.listener->confirmed(asOf);
    }
  }

  void setDown() {
    clientId_.store(0);
    std::lock_guard<std::mutex> lock(listenersMutex_);
    if (up_.exchange(false)) {
      downs_.fetch_add(1, std::memory_order_relaxed);
    }
    // Also when it never came up: a listener that attached while it was down stays bypassed.
    for (const Entry& e : listeners_) {
      e.listener->down();
    }
  }

  void append(redisContext* c, const Argv& argv) const {
    std::vector<const char*> args;
    std::vector<std::size_t> lens;
    for (std::string_view a : argv) {
      args.push_back(a.data());
      lens.push_back(a.size());
    }
    if (redisAppendCommandArgv(c, static_cast<int>(args.size()), args.data(), lens.data()) !=
        REDIS_OK) {
      throw Lost("append failed");
    }
  }

  static void await(const redisContext* c, short events, Clock::time_point by) {
    for (;;) {
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(by - Clock::now()).count();
      if (ms <= 0) {
        throw Lost("timed out");
      }
      pollfd pfd{c->fd, events, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(ms));
      if (ready > 0) {
        return;
      }
      if (ready < 0 && errno != EINTR) {
        throw Lost("poll failed");
      }
    }
  }

  static void flush(redisContext* c, Clock::time_point by) {
    int done = 0;
    for (;;) {
      if (redisBufferWrite(c, &done) != REDIS_OK) {
        throw Lost("write failed");
      }
      if (done != 0) {
        return;
      }
      await(c, POLLOUT, by);
    }
  }

  // One command and its reply, by the deadline (before SUBSCRIBE: no pushes yet).
  Reply exchange(redisContext* c, const Argv& argv, Clock::time_point by) const {
    append(c, argv);
    flush(c, by);
    void* raw = nullptr;
    for (;;) {
      if (redisGetReplyFromReader(c, &raw) != REDIS_OK) {
        throw Lost("protocol error");
      }
      if (raw != nullptr) {
        break;
      }
      await(c, POLLIN, by);
      if (redisBufferRead(c) != REDIS_OK) {
        throw Lost("read failed");
      }
    }
    const detail::HiredisReplyPtr owned(raw);
    return detail::convertReply(*static_cast<const redisReply*>(raw));
  }

  static void expectOk(const Reply& reply) {
    if (reply.isError()) {
      throw Lost("refused: " + reply.str);
    }
  }

  const HiredisFeedOptions options_;
  const std::uint64_t generation_;
  std::vector<std::string> prefixes_;
  int wake_[2] = {-1, -1};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> up_{false};
  std::atomic<long long> clientId_{0};
  std::atomic<Clock::rep> confirmedAt_{0};
  std::atomic<std::uint64_t> keys_{0}, flushes_{0}, ups_{0}, downs_{0};
  std::mutex listenersMutex_;
  std::vector<Entry> listeners_;
  std::mutex stateMutex_;
  std::condition_variable stateChanged_;
  std::thread thread_;
};

} // namespace cacheaside::near
