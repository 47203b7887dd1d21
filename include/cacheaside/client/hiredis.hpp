#pragma once
/// \file client/hiredis.hpp
/// RedisClient over hiredis (0.14 and 1.x): a thread-safe pool of connections, each call bounded
/// by a deadline. hiredis connects; the client formats, writes, reads and parses (client/resp.hpp)
/// itself, so that a round trip costs two system calls (send(2) and recv(2)), as a blocking
/// hiredis call does, a reply's string is copied once, and a closed connection raises no SIGPIPE.
/// Link cacheaside::hiredis. Not included by cacheaside.hpp.

#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/client/resp.hpp>
#include <cacheaside/detail/fork_generation.hpp>
#include <cacheaside/errors.hpp>

#include <hiredis/hiredis.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace cacheaside {

/// Where and how HiredisClient connects. The timeouts are deadlines for whole steps, not limits per
/// system call: a call waits at most poolWaitTimeout for a pooled connection, then at most
/// commandTimeout for everything else, opening a new connection included.
struct HiredisOptions {
  /// Server address. Default "127.0.0.1". A literal IP address keeps connecting within
  /// connectTimeout; a host name is resolved (getaddrinfo, inside hiredis, IPv4 first) on every new
  /// connection, and that lookup takes as long as the system resolver takes, outside the deadline.
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
  /// Deadline for opening a connection: TCP or Unix connect, then AUTH and SELECT. The connect
  /// also counts against the commandTimeout of the call that needs it. Default 50 ms.
  std::chrono::milliseconds connectTimeout = std::chrono::milliseconds(50);
  /// Deadline for one command, or one whole pipeline, from the moment it has a pooled connection
  /// (or room for a new one) until its last reply: connecting, sending and every reply. Default
  /// 50 ms.
  std::chrono::milliseconds commandTimeout = std::chrono::milliseconds(50);
  /// Most connections open at once. Default 8.
  std::size_t poolSize = 8;
  /// Longest wait for a pooled connection when all are busy. Default 50 ms.
  std::chrono::milliseconds poolWaitTimeout = std::chrono::milliseconds(50);
  /// A pooled connection idle at least this long is checked before use (one poll(2)): if the
  /// server closed it meanwhile (restart, CLIENT KILL, an idle timeout), it is replaced rather
  /// than failing the call. One used more recently is not checked, which saves a system call
  /// per call; if the server closed it within that moment, that call fails as it would have had
  /// the close come during it. 0 checks every time. Default 1 ms.
  std::chrono::milliseconds checkIdleAfter = std::chrono::milliseconds(1);
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

class HiredisClusterClient;

/// A RedisClient over a pool of hiredis connections. Thread-safe. Connections open lazily, up to
/// poolSize. A connection goes back to the pool only when its call read every reply it asked for;
/// any failure (I/O error, timeout, protocol error, an exception such as std::bad_alloc) closes it,
/// and one the server closed while it was idle is replaced before it is used.
///
/// fork(): a forked child never uses a connection of its parent's. Its first call notices the
/// fork and starts an empty pool; it closes its copies of the idle connections it inherited
/// without sending anything on them, and leaves alone (still open in the child) those the
/// parent's threads were using at the moment of the fork.
class HiredisClient final : public RedisClient {
public:
  /// Stores the options; connects on first use. Throws std::invalid_argument for a zero pool
  /// size or a non-positive timeout.
  explicit HiredisClient(HiredisOptions options) : options_(std::move(options)) {
    if (options_.poolSize == 0) {
      throw std::invalid_argument("cacheaside: HiredisOptions::poolSize must be positive");
    }
    if (options_.connectTimeout.count() <= 0 || options_.commandTimeout.count() <= 0 ||
        options_.poolWaitTimeout.count() < 0 || options_.checkIdleAfter.count() < 0) {
      throw std::invalid_argument("cacheaside: HiredisOptions timeouts must be positive");
    }
    pool_.store(new Pool(detail::currentForkGeneration(), options_.poolSize, nullptr));
  }

  HiredisClient(const HiredisClient&) = delete;
  HiredisClient& operator=(const HiredisClient&) = delete;

  /// Closes the pooled connections. No call may be in progress.
  ~HiredisClient() override {
    Pool* pool = pool_.load();
    for (bool current = true; pool != nullptr; current = false) {
      Pool* inherited = pool->inherited;
      if (current || pool->drained) {
        delete pool;
      }
      pool = inherited;
    }
  }

  /// Sends one command. Throws TimeoutError when it is not answered within commandTimeout,
  /// ConnectionError on any other transport failure or when a new connection's AUTH or SELECT is
  /// refused, and PoolExhaustedError when every connection stayed busy for poolWaitTimeout.
  Reply command(const Command& command) override {
    Borrowed conn(*this);
    const Deadline deadline = commandDeadline();
    conn.connectIfNew(deadline);
    std::string& wire = startWire();
    append(wire, command.argv);
    send(conn.get(), wire, deadline);
    std::vector<Reply> replies;
    receive(conn.get(), 1, deadline, replies);
    conn.keep();
    return std::move(replies.front());
  }

  /// Sends the commands back to back and reads their replies: one round trip, all of it within
  /// one commandTimeout.
  std::vector<Reply> pipeline(const std::vector<Command>& commands) override {
    std::vector<Reply> replies;
    replies.reserve(commands.size());
    if (commands.empty()) {
      return replies;
    }
    Borrowed conn(*this);
    const Deadline deadline = commandDeadline();
    conn.connectIfNew(deadline);
    std::string& wire = startWire();
    for (const Command& command : commands) {
      append(wire, command.argv);
    }
    send(conn.get(), wire, deadline);
    receive(conn.get(), commands.size(), deadline, replies);
    conn.keep();
    return replies;
  }

  /// The options the client was built with.
  const HiredisOptions& options() const noexcept { return options_; }

private:
  using Clock = std::chrono::steady_clock;
  friend class HiredisClusterClient;

  // One node's share of a cluster call: like pipeline(), but waiting for a connection and for
  // the replies only until `until` when that comes first. `written` tells whether any command
  // may have reached the server (false: the connection could not be had, safe to retry).
  std::vector<Reply> exchangeUntil(const Command* commands, std::size_t count,
                                   Clock::time_point until, bool& written) {
    written = false;
    std::vector<Reply> replies;
    replies.reserve(count);
    Borrowed conn(*this, until);
    Deadline deadline = commandDeadline();
    if (until < deadline.at) {
      deadline.at = until;
    }
    conn.connectIfNew(deadline);
    written = true;
    std::string& wire = startWire();
    for (std::size_t i = 0; i < count; ++i) {
      append(wire, commands[i].argv);
    }
    send(conn.get(), wire, deadline);
    receive(conn.get(), count, deadline, replies);
    conn.keep();
    return replies;
  }

  struct Deadline {
    Clock::time_point at;
    std::chrono::milliseconds budget; // for the message
    const char* step;                 // what timed out
  };

  // A connection: hiredis's context (its socket and reply parser), the receive timeout its
  // socket has (SO_RCVTIMEO, which bounds one recv(2)), and when it was last given back.
  struct Connection {
    detail::HiredisContextPtr ctx;
    Clock::duration receiveTimeout{};
    Clock::time_point idleSince{};
    explicit operator bool() const noexcept { return static_cast<bool>(ctx); }
  };

  // The connections of one process. A forked child replaces it wholesale (see currentPool).
  struct Pool {
    Pool(std::uint64_t forkGeneration, std::size_t capacity, Pool* inheritedFrom)
        : generation(forkGeneration), inherited(inheritedFrom) {
      idle.reserve(capacity); // so that returning a connection never allocates
    }
    const std::uint64_t generation;
    Pool* const inherited; // the parent's pool this one replaced in a forked child, or null
    bool drained = false;  // an inherited pool whose idle connections the child closed
    std::mutex mutex;
    std::condition_variable available;
    std::vector<Connection> idle;
    std::size_t open = 0;
  };

  // A pooled connection, or room for a new one, borrowed for one call. The connection returns to
  // the pool only if the call reached keep(), that is, read every reply it sent for; otherwise
  // unread replies could reach the next caller.
  class Borrowed {
  public:
    explicit Borrowed(HiredisClient& owner, Clock::time_point waitUntil = Clock::time_point::max())
        : owner_(owner), pool_(owner.currentPool()), conn_(owner.borrow(pool_, waitUntil)) {}
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;
    ~Borrowed() { owner_.giveBack(pool_, std::move(conn_), kept_); }
    void connectIfNew(const Deadline& call) {
      if (!conn_) {
        conn_ = owner_.connect(call);
      }
    }
    Connection& get() noexcept { return conn_; }
    void keep() noexcept { kept_ = true; }

  private:
    HiredisClient& owner_;
    Pool& pool_;
    Connection conn_;
    bool kept_ = false;
  };

  // A per-thread buffer for the commands' wire format, reused so that a command allocates none;
  // emptied for the call's commands.
  static std::string& startWire() {
    thread_local std::string buffer;
    buffer.clear();
    return buffer;
  }

  // The wire buffer a thread keeps between commands.
  static constexpr std::size_t kKeptWireBytes = 64 * 1024;

  static std::size_t digits(std::size_t n) noexcept {
    std::size_t d = 1;
    for (; n >= 10; n /= 10) {
      ++d;
    }
    return d;
  }

  // Writes "<c><n>\r\n" at p; returns the end.
  static char* header(char* p, char c, std::size_t n) noexcept {
    *p++ = c;
    const std::size_t d = digits(n);
    for (std::size_t i = d; i > 0; --i, n /= 10) {
      p[i - 1] = static_cast<char>('0' + n % 10);
    }
    p += d;
    *p++ = '\r';
    *p++ = '\n';
    return p;
  }

  Deadline commandDeadline() const {
    return {Clock::now() + options_.commandTimeout, options_.commandTimeout, "command"};
  }

  // Appends one command to wire, formatted here (RESP: an array of bulk strings) rather than by
  // hiredis's printf-like formatter, which costs more than the rest of a hit's client side.
  static void append(std::string& wire, const Argv& argv) {
    std::size_t size = 3 + digits(argv.size());
    for (std::string_view a : argv) {
      size += 5 + digits(a.size()) + a.size();
    }
    const std::size_t at = wire.size();
    wire.resize(at + size);
    char* p = header(wire.data() + at, '*', argv.size());
    for (std::string_view a : argv) {
      p = header(p, '$', a.size());
      if (!a.empty()) {
        std::memcpy(p, a.data(), a.size());
      }
      p += a.size();
      *p++ = '\r';
      *p++ = '\n';
    }
  }

  // Writes wire out. MSG_DONTWAIT: a full socket buffer is waited for in poll(2), against the
  // deadline; MSG_NOSIGNAL: a connection the server closed is an error, not a SIGPIPE.
  void send(Connection& conn, std::string& wire, const Deadline& deadline) const {
    const int fd = conn.ctx->fd;
    std::size_t done = 0;
    while (done < wire.size()) {
      const ssize_t n =
          ::send(fd, wire.data() + done, wire.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) {
        done += static_cast<std::size_t>(n);
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        await(fd, POLLOUT, deadline);
      } else if (errno != EINTR) {
        ioFailed("send");
      }
    }
    if (wire.capacity() > kKeptWireBytes) {
      std::string().swap(wire); // a large value's buffer is not kept for the thread's life
    }
  }

  // Reads count replies into out. They are parsed from each chunk as it arrives; the bytes of
  // a reply that spans chunks wait in a per-thread buffer. Bytes beyond the last reply would
  // desynchronize the connection: a ConnectionError, which closes it.
  void receive(Connection& conn, std::size_t count, const Deadline& deadline,
               std::vector<Reply>& out) const {
    thread_local std::string pending;
    pending.clear();
    std::size_t parsed = 0; // bytes of pending already parsed
    char chunk[16 * 1024];
    const std::size_t wanted = out.size() + count;
    while (out.size() < wanted) {
      const std::size_t n = readSome(conn, chunk, sizeof chunk, deadline);
      const char* from = chunk;
      const char* end = chunk + n;
      if (parsed < pending.size()) { // a reply spans chunks: parse from the buffer
        pending.append(chunk, n);
        from = pending.data() + parsed;
        end = pending.data() + pending.size();
      }
      const char* cursor = from;
      while (out.size() < wanted) {
        Reply reply;
        const detail::Parsed got = detail::parseReply(cursor, end, reply);
        if (got == detail::Parsed::NeedMore) {
          break;
        }
        if (got == detail::Parsed::Invalid) {
          throw ConnectionError("cacheaside: redis " + endpoint() + ": protocol error in a reply");
        }
        out.push_back(std::move(reply));
      }
      if (from == chunk) {
        pending.assign(cursor, end);
        parsed = 0;
      } else {
        parsed = static_cast<std::size_t>(cursor - pending.data());
      }
    }
    const bool extra = parsed < pending.size();
    if (pending.capacity() > kKeptWireBytes) {
      std::string().swap(pending); // a large value's buffer is not kept for the thread's life
    }
    if (extra) {
      throw ConnectionError("cacheaside: redis " + endpoint() + ": bytes after the last reply");
    }
  }

  // Reads what the socket has into buffer (at least one byte), waiting in recv(2) itself (the
  // socket blocks, bounded by its receive timeout) rather than in a poll(2) before it: one
  // system call per read.
  std::size_t readSome(Connection& conn, char* buffer, std::size_t size,
                       const Deadline& deadline) const {
    for (;;) {
      const auto left = deadline.at - Clock::now();
      if (left <= Clock::duration::zero()) {
        timedOut(deadline);
      }
      // Set anew when it would outlast the deadline by more than a millisecond (poll(2)'s
      // granularity), or is far shorter than what is left.
      if (conn.receiveTimeout > left + std::chrono::milliseconds(1) ||
          conn.receiveTimeout < left / 2) {
        setReceiveTimeout(conn, left);
      }
      const ssize_t n = ::recv(conn.ctx->fd, buffer, size, 0);
      if (n > 0) {
        return static_cast<std::size_t>(n);
      }
      if (n == 0) {
        throw ConnectionError("cacheaside: redis " + endpoint() +
                              ": connection closed by the server");
      }
      if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        ioFailed("recv");
      }
    }
  }

  void setReceiveTimeout(Connection& conn, Clock::duration timeout) const {
    const auto us = std::max<long long>(
        1, std::chrono::ceil<std::chrono::microseconds>(timeout).count()); // 0 would be forever
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(us / 1000000);
    tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
    if (::setsockopt(conn.ctx->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) {
      ioFailed("setsockopt");
    }
    conn.receiveTimeout = std::chrono::microseconds(us);
  }

  // Waits until fd is ready for `events` (or has an error, which the next read or write reports),
  // or throws TimeoutError at the deadline.
  void await(int fd, short events, const Deadline& deadline) const {
    for (;;) {
      const auto left = deadline.at - Clock::now();
      if (left <= Clock::duration::zero()) {
        timedOut(deadline);
      }
      // poll() counts whole milliseconds: round up, so that it never wakes before the deadline.
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      pollfd pfd{};
      pfd.fd = fd;
      pfd.events = events;
      const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<long long>(ms, INT_MAX)));
      if (ready > 0) {
        return;
      }
      if (ready < 0 && errno != EINTR) {
        ioFailed("poll");
      }
    }
  }

  [[noreturn]] void timedOut(const Deadline& deadline) const {
    throw TimeoutError("cacheaside: redis " + endpoint() + ": " + deadline.step +
                       " timed out after " + std::to_string(deadline.budget.count()) + " ms");
  }

  [[noreturn]] void ioFailed(const char* call) const {
    throw ConnectionError("cacheaside: redis " + endpoint() + ": " + call + ": " +
                          std::system_category().message(errno));
  }

  [[noreturn]] void fail(const redisContext* c) const {
    throw ConnectionError("cacheaside: redis " + endpoint() + ": " +
                          (c->err != 0 ? c->errstr : "unknown error"));
  }

  std::string endpoint() const {
    return options_.unixSocket.empty() ? options_.host + ":" + std::to_string(options_.port)
                                       : options_.unixSocket;
  }

  // Opens a connection and runs AUTH and SELECT, all within connectTimeout and the call's deadline.
  Connection connect(const Deadline& call) const {
    const auto connectBy = Clock::now() + options_.connectTimeout;
    const Deadline deadline = connectBy < call.at
                                  ? Deadline{connectBy, options_.connectTimeout, "connect"}
                                  : Deadline{call.at, call.budget, "command (connecting)"};
    const bool tcp = options_.unixSocket.empty();
    detail::HiredisContextPtr ctx(tcp ? redisConnectNonBlock(options_.host.c_str(), options_.port)
                                      : redisConnectUnixNonBlock(options_.unixSocket.c_str()));
    if (!ctx) {
      throw ConnectionError("cacheaside: redis " + endpoint() + ": cannot allocate a context");
    }
    if (ctx->err != 0) {
      fail(ctx.get());
    }
    // Not inherited by programs this process executes: they would hold the connection open.
    (void)::fcntl(ctx->fd, F_SETFD, FD_CLOEXEC);
    await(ctx->fd, POLLOUT, deadline); // the non-blocking connect completes
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(ctx->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
      error = errno;
    }
    if (error != 0) {
      throw ConnectionError("cacheaside: redis " + endpoint() + ": " +
                            std::system_category().message(error));
    }
    if (tcp) {
      // hiredis 1.x leaves Nagle's algorithm on after a non-blocking connect; 0.14 turned it off.
      const int one = 1;
      (void)::setsockopt(ctx->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    // Reads block, bounded by the receive timeout (see readSome); writes pass MSG_DONTWAIT.
    const int flags = ::fcntl(ctx->fd, F_GETFL);
    if (flags < 0 || ::fcntl(ctx->fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
      ioFailed("fcntl");
    }
    Connection conn{std::move(ctx), {}, {}};
    setReceiveTimeout(conn, options_.commandTimeout);
    handshake(conn, deadline);
    return conn;
  }

  // AUTH and SELECT, pipelined. A refusal leaves the connection unusable: a ConnectionError.
  void handshake(Connection& conn, const Deadline& deadline) const {
    std::string& wire = startWire();
    const char* steps[2] = {};
    std::size_t count = 0;
    if (!options_.password.empty()) {
      Argv auth{"AUTH"};
      if (!options_.user.empty()) {
        auth.push_back(options_.user);
      }
      auth.push_back(options_.password);
      append(wire, auth);
      steps[count++] = "AUTH";
    }
    if (options_.db != 0) {
      const std::string db = std::to_string(options_.db);
      append(wire, {"SELECT", db});
      steps[count++] = "SELECT";
    }
    if (count == 0) {
      return;
    }
    send(conn, wire, deadline);
    std::vector<Reply> replies;
    receive(conn, count, deadline, replies);
    for (std::size_t i = 0; i < count; ++i) {
      const Reply& reply = replies[i];
      if (reply.isError()) {
        throw ConnectionError("cacheaside: redis " + endpoint() + ": " + steps[i] +
                              " failed: " + reply.str);
      }
    }
  }

  // This process's pool. In a forked child the first call finds the parent's pool (another fork
  // generation) and swaps in an empty one; every other call pays one relaxed load and a compare.
  Pool& currentPool() {
    Pool* pool = pool_.load(std::memory_order_acquire);
    const std::uint64_t generation = detail::currentForkGeneration();
    if (pool->generation == generation) {
      return *pool;
    }
    return replaceInheritedPool(pool, generation);
  }

  // The parent's pool mutex may have been held at the fork by a thread the child does not have,
  // so the child never waits for it: it swaps in a new pool atomically, then try_locks the old
  // one. If that succeeds, the old pool's state is consistent and its idle connections are freed:
  // redisFree only closes the child's copy of each socket and sends nothing, so the parent's
  // connections stay intact. If it fails, the idle connections are leaked rather than risk a
  // deadlock. Connections borrowed by the parent's threads at the fork are never touched (their
  // owners do not exist in the child). The old Pool object itself stays allocated until the client
  // is destroyed: another thread of the child may still be reading its generation.
  Pool& replaceInheritedPool(Pool* inherited, std::uint64_t generation) {
    auto fresh = std::make_unique<Pool>(generation, options_.poolSize, inherited);
    Pool* expected = inherited;
    if (!pool_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
      return *expected; // another thread of this child replaced it first
    }
    Pool& adopted = *fresh.release();
    if (inherited->mutex.try_lock()) {
      std::vector<Connection> idle = std::move(inherited->idle);
      inherited->drained = true;
      inherited->mutex.unlock();
    }
    return adopted;
  }

  // An idle connection, or null with room reserved (open counted) for the caller to connect.
  Connection borrow(Pool& pool, Clock::time_point waitUntil) {
    std::unique_lock<std::mutex> lock(pool.mutex);
    if (pool.idle.empty() && pool.open >= options_.poolSize) {
      const auto deadline = std::min(Clock::now() + options_.poolWaitTimeout, waitUntil);
      while (pool.idle.empty() && pool.open >= options_.poolSize) {
        if (pool.available.wait_until(lock, deadline) == std::cv_status::timeout &&
            pool.idle.empty() && pool.open >= options_.poolSize) {
          // The only place PoolExhaustedError is thrown: a local shortage, not a Redis failure.
          throw PoolExhaustedError("cacheaside: redis " + endpoint() + ": all " +
                                   std::to_string(options_.poolSize) +
                                   " pooled connections busy for " +
                                   std::to_string(options_.poolWaitTimeout.count()) + " ms");
        }
      }
    }
    while (!pool.idle.empty()) {
      Connection conn = std::move(pool.idle.back());
      pool.idle.pop_back();
      if (Clock::now() - conn.idleSince < options_.checkIdleAfter || stillOpen(*conn.ctx)) {
        return conn;
      }
      --pool.open; // closed by the server while idle (restart, timeout, proxy): replace it
    }
    ++pool.open;
    return Connection{};
  }

  // An idle connection has nothing to read: readable means the server closed it (EOF) or sent
  // something unasked, and either way it must not carry the next command.
  static bool stillOpen(const redisContext& c) noexcept {
    pollfd pfd{};
    pfd.fd = c.fd;
    pfd.events = POLLIN;
    return ::poll(&pfd, 1, 0) == 0;
  }

  // Returns a connection to the pool, or closes it and frees its room (also when none was opened).
  void giveBack(Pool& pool, Connection conn, bool kept) noexcept {
    if (conn && (!kept || conn.ctx->err != 0)) {
      conn.ctx.reset(); // closed outside the lock
    }
    {
      std::lock_guard<std::mutex> lock(pool.mutex);
      if (conn) {
        conn.idleSince = Clock::now();
        pool.idle.push_back(std::move(conn));
      } else {
        --pool.open;
      }
    }
    pool.available.notify_one();
  }

  const HiredisOptions options_;
  std::atomic<Pool*> pool_{nullptr};
};

} // namespace cacheaside
