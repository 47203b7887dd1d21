#pragma once
// The HTTP/1.1 server of the products API, on Boost.Beast and Boost.Asio: keep-alive
// connections served by a few threads sharing one io_context, each request handed to one
// function on the thread that read it. Handlers may block (Redis, SQLite): while one thread is
// blocked the others serve every other connection, and when all of them have been blocked for a
// while (stuckAfter), not merely waiting for a CPU, the server doubles them, up to maxThreads,
// and parks the extra ones again once a second passes without all of them stuck. Identical
// GETs that arrive while one of them is handled wait without a thread for the next run, which
// answers them all (ServerOptions::collapseKey).

#include <cacheaside/http.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace products {

/// A request as the handler sees it.
struct Incoming {
  /// The method, as sent ("GET").
  std::string method;
  /// The path, percent-decoded, without the query.
  std::string path;
  /// The query parameters, percent-decoded ('+' is a space), in request order.
  cacheaside::http::Params query;
  /// The request headers, in request order.
  cacheaside::http::Params headers;
  /// The body.
  std::string body;
};

/// What the handler answers.
struct Outgoing {
  /// The HTTP status.
  int status = 200;
  /// The Content-Type, unless the status has no body (204, 304).
  std::string contentType = "application/json";
  /// The body (dropped for 204, 304 and HEAD requests).
  std::string body;
  /// More headers.
  cacheaside::http::Params headers;
};

/// Answers one request; what it throws becomes a 500.
using Handler = std::function<Outgoing(const Incoming&)>;

/// The key under which a request's response may be shared with identical requests that arrive
/// while it is being handled, or std::nullopt for a request that must be handled on its own.
using CollapseKey = std::function<std::optional<std::string>(const Incoming&)>;

/// How the server listens and serves.
struct ServerOptions {
  /// The address to listen on.
  std::string host = "127.0.0.1";
  /// The port to listen on.
  int port = 8080;
  /// Threads running the handlers and the network I/O at start. Two is fastest on a cache hit:
  /// one waits for Redis while the other reads the next requests (which, with collapseKey,
  /// wait for that same lookup without a thread); more threads mean more context switches.
  std::size_t threads = 2;
  /// The most threads: their number doubles while every thread has been in a handler for
  /// longer than stuckAfter (a database query, a wait for another request's load), and falls
  /// back to `threads` after a second in which that was never so.
  std::size_t maxThreads = 256;
  /// How long a handler may run before its thread counts as stuck.
  std::chrono::milliseconds stuckAfter{20};
  /// Requests with a larger body are answered 413 and the connection closed.
  std::size_t maxBodyBytes = 16 * 1024;
  /// Connections the kernel queues before accept() (capped by net.core.somaxconn).
  int listenBacklog = 4096;
  /// A connection has this long, from the moment the server waits for its next request, to
  /// send that request and take the response; then it is closed (one timer per request).
  std::chrono::seconds idleTimeout{30};
  /// Request collapsing (none when unset): a request whose key is being handled waits, without
  /// a thread, for the next run of the handler for that key, which starts once the current one
  /// ends and answers every request that arrived during it with a copy of one response. Each
  /// response thus comes from a run that began after its request arrived (never older than a
  /// write answered before the request was sent), and a busy key costs one run per round
  /// instead of one per request. Give a key only to requests whose response depends on nothing
  /// but the key (HEAD requests are never collapsed).
  CollapseKey collapseKey;
};

/// Listens at construction (throws std::system_error when it cannot); serves from run() until
/// stop().
class Server {
public:
  /// Binds and listens; throws std::system_error.
  Server(const ServerOptions& options, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Serves on options.threads threads (more when they are stuck, see ServerOptions) until
  /// stop(); the calling thread watches them.
  void run();
  /// Makes run() return; callable from any thread, once run() has started or before.
  void stop();
  /// Requests answered with another request's response (see ServerOptions::collapseKey).
  std::uint64_t collapsed() const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace products
