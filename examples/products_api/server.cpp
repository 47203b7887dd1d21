#include "server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <optional>
#include <string_view>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

namespace products {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

int hexDigit(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// Percent-decodes s; in a query, '+' is a space. A malformed escape is kept as it is.
std::string decode(std::string_view s, bool query) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hexDigit(s[i + 1]) >= 0 && hexDigit(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexDigit(s[i + 1]) * 16 + hexDigit(s[i + 2])));
      i += 2;
    } else if (query && s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Incoming incoming(const bhttp::request<bhttp::string_body>& req) {
  Incoming in;
  in.method = std::string(req.method_string());
  const std::string_view target(req.target().data(), req.target().size());
  const std::size_t mark = target.find('?');
  in.path = decode(target.substr(0, mark), false);
  if (mark != std::string_view::npos) {
    std::string_view rest = target.substr(mark + 1);
    while (!rest.empty()) {
      const std::size_t amp = rest.find('&');
      const std::string_view pair = rest.substr(0, amp);
      if (!pair.empty()) {
        const std::size_t eq = pair.find('=');
        in.query.emplace_back(decode(pair.substr(0, eq), true),
                              eq == std::string_view::npos ? std::string()
                                                           : decode(pair.substr(eq + 1), true));
      }
      rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    }
  }
  for (const auto& field : req) {
    in.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  in.body = req.body();
  return in;
}

Outgoing failure(int status, const char* message) {
  Outgoing out;
  out.status = status;
  out.body = nlohmann::json{{"error", message}}.dump();
  return out;
}

// When each thread's current handler began (steady_clock nanoseconds; 0 for a thread not in a
// handler), so that a monitor can tell when every thread is stuck in a slow one.
class BusyTable {
public:
  explicit BusyTable(std::size_t slots)
      : started_(new std::atomic<std::int64_t>[slots]), tids_(new std::atomic<int>[slots]) {
    for (std::size_t i = 0; i < slots; ++i) {
      started_[i].store(0, std::memory_order_relaxed);
      tids_[i].store(0, std::memory_order_relaxed);
    }
  }
  static std::int64_t now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // The calling thread's slot; set once by each thread before it serves.
  static std::size_t& slot() {
    thread_local std::size_t index = 0;
    return index;
  }
  // Called by each thread once, after setting its slot.
  void enter() { tids_[slot()].store(static_cast<int>(::syscall(SYS_gettid))); }
  // Nanoseconds the thread of slot i has spent runnable but waiting for a CPU (the kernel's
  // schedstat run_delay), or -1 when unknown.
  std::int64_t waitedForCpu(std::size_t i) const {
    const int tid = tids_[i].load();
    if (tid == 0) {
      return -1;
    }
    const std::string path = "/proc/self/task/" + std::to_string(tid) + "/schedstat";
    std::FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) {
      return -1;
    }
    unsigned long long onCpu = 0;
    unsigned long long waiting = 0;
    const int read = std::fscanf(f, "%llu %llu", &onCpu, &waiting);
    std::fclose(f);
    return read == 2 ? static_cast<std::int64_t>(waiting) : -1;
  }
  void begin() { started_[slot()].store(now(), std::memory_order_relaxed); }
  void end() { started_[slot()].store(0, std::memory_order_relaxed); }
  // Among the first n slots, how many have been in their handler for longer than age.
  std::size_t olderThan(std::size_t n, std::chrono::nanoseconds age) const {
    const std::int64_t limit = now() - age.count();
    std::size_t count = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::int64_t started = started_[i].load(std::memory_order_relaxed);
      count += started != 0 && started < limit ? 1 : 0;
    }
    return count;
  }

private:
  std::unique_ptr<std::atomic<std::int64_t>[]> started_;
  std::unique_ptr<std::atomic<int>[]> tids_;
};

class Session;

// Request collapsing (ServerOptions::collapseKey): per key, whether a handler is running for it,
// and the requests that arrived meanwhile. Those wait, without a thread, for the next run, which
// begins after they arrived: so none gets a response older than its request (it would be, had it
// joined the run in progress, which may have read the cache before a write it follows).
class Collapser {
public:
  struct Waiter {
    std::shared_ptr<Session> session;
    bool keepAlive = true;
  };

  // True when the caller is to run the handler for key (and then call next() until it returns
  // no waiters); false when the request was queued for the next run.
  bool join(const std::string& key, Waiter waiter) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = waiting_.find(key);
    if (it == waiting_.end()) {
      waiting_.emplace(key, std::vector<Waiter>());
      return true;
    }
    it->second.push_back(std::move(waiter));
    collapsed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  // After a run for key: the requests that arrived during it, for the caller to run the handler
  // again and answer them all; none ends the runs for key.
  std::vector<Waiter> next(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = waiting_.find(key);
    std::vector<Waiter> waiters = std::move(it->second);
    it->second.clear();
    if (waiters.empty()) {
      waiting_.erase(it);
    }
    return waiters;
  }

  std::uint64_t collapsed() const { return collapsed_.load(std::memory_order_relaxed); }

private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::vector<Waiter>> waiting_; // a key is here while it runs
  std::atomic<std::uint64_t> collapsed_{0};
};

// One connection: read a request, answer it, and again while the client keeps it alive.
class Session : public std::enable_shared_from_this<Session> {
public:
  Session(tcp::socket socket, const ServerOptions& options, const Handler& handler, BusyTable& busy,
          Collapser& collapser)
      : stream_(std::move(socket)), options_(options), handler_(handler), busy_(busy),
        collapser_(collapser) {}

  void read() {
    parser_.emplace();
    parser_->body_limit(options_.maxBodyBytes);
    stream_.expires_after(options_.idleTimeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->onRead(ec); });
  }

private:
  void onRead(beast::error_code ec) {
    if (ec == bhttp::error::body_limit) {
      return send(failure(413, "the body is too large"), false, false);
    }
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted ||
        ec == net::error::eof) {
      return close();
    }
    if (ec) { // a malformed request: the stream cannot be resynchronized
      return send(failure(400, "malformed request"), false, false);
    }
    const bhttp::request<bhttp::string_body>& req = parser_->get();
    const bool keepAlive = req.keep_alive();
    const bool head = req.method() == bhttp::verb::head;
    const Incoming in = incoming(req);
    std::optional<std::string> key;
    if (options_.collapseKey && !head) {
      key = options_.collapseKey(in);
    }
    if (key && !collapser_.join(*key, {shared_from_this(), keepAlive})) {
      return; // queued: a later run answers it
    }
    send(run(in), keepAlive, head);
    if (!key) {
      return;
    }
    // Requests that arrived during that run: one more run answers them all, while there are any.
    for (auto waiters = collapser_.next(*key); !waiters.empty(); waiters = collapser_.next(*key)) {
      const Outgoing shared = run(in);
      for (Collapser::Waiter& waiter : waiters) {
        waiter.session->send(shared, waiter.keepAlive, false);
      }
    }
  }

  // Calls the handler; what it throws becomes a 500.
  Outgoing run(const Incoming& in) {
    Outgoing out;
    busy_.begin();
    try {
      out = handler_(in);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "products_api: internal error: %s\n", e.what());
      out = failure(500, "internal error");
    } catch (...) {
      std::fprintf(stderr, "products_api: internal error\n");
      out = failure(500, "internal error");
    }
    busy_.end();
    return out;
  }

  void send(Outgoing out, bool keepAlive, bool head) {
    response_ = {};
    response_.version(11);
    response_.result(static_cast<unsigned>(out.status));
    response_.keep_alive(keepAlive);
    const bool bodiless = out.status == 204 || out.status == 304 || out.status < 200;
    if (!bodiless) {
      response_.set(bhttp::field::content_type, out.contentType);
    }
    for (auto& [name, value] : out.headers) {
      response_.insert(name, value);
    }
    if (bodiless) {
      response_.content_length(boost::none);
    } else if (head) {
      response_.content_length(out.body.size()); // what a GET would send, without the body
    } else {
      response_.body() = std::move(out.body);
      response_.prepare_payload();
    }
    bhttp::async_write(stream_, response_,
                       [self = shared_from_this(), keepAlive](beast::error_code ec, std::size_t) {
                         if (ec) {
                           return self->close();
                         }
                         if (!keepAlive) {
                           return self->drain();
                         }
                         self->read();
                       });
  }

  // Closes the sending side, then reads and drops what the client still sends (the rest of a
  // body too large, say) until it closes too, or idleTimeout: closing with unread data would
  // reset the connection and could destroy the response before the client reads it.
  void drain() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.async_read_some(net::buffer(scratch_),
                            [self = shared_from_this()](beast::error_code ec, std::size_t) {
                              if (ec) {
                                return self->close();
                              }
                              self->drain();
                            });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> response_;
  char scratch_[4096];
  const ServerOptions& options_;
  const Handler& handler_;
  BusyTable& busy_;
  Collapser& collapser_;
};

} // namespace

struct Server::Impl {
  Impl(const ServerOptions& o, Handler h)
      : options(o), handler(std::move(h)), busy(std::max(o.threads, o.maxThreads)),
        io(static_cast<int>(std::max(o.threads, o.maxThreads))), acceptor(io) {
    const tcp::endpoint endpoint(net::ip::make_address(options.host),
                                 static_cast<unsigned short>(options.port));
    acceptor.open(endpoint.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(options.listenBacklog);
    acceptor.non_blocking(true);
  }

  static constexpr std::size_t kAcceptBatch = 256;
  // A serving thread that waited this long for a CPU within one 10 ms tick is starved.
  static constexpr std::chrono::nanoseconds kStarved{std::chrono::milliseconds(2)};

  void accept() {
    acceptor.async_accept(io, [this](beast::error_code ec, tcp::socket socket) {
      if (ec == net::error::operation_aborted) {
        return; // stopping
      }
      if (!ec) {
        serve(std::move(socket));
      }
      // Take every connection already queued before waiting again: each async_accept completes
      // behind all the requests queued in the io_context, so accepting one connection per turn
      // made the last of 1,000 connections opened at once wait for hundreds of turns.
      for (std::size_t i = 0; i < kAcceptBatch; ++i) {
        tcp::socket next(io);
        acceptor.accept(next, ec);
        if (ec) {
          break; // would_block: the queue is empty (the acceptor is non-blocking)
        }
        serve(std::move(next));
      }
      accept();
    });
  }

  void serve(tcp::socket socket) {
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec); // no Nagle wait before small writes
    std::make_shared<Session>(std::move(socket), options, handler, busy, collapser)->read();
  }

  // Called with mutex held. The first options.threads threads always serve; the others serve
  // while their index is below `wanted`, and otherwise wait parked (many threads sharing the
  // io_context make every request slower, so the extra ones must not stay in it).
  void startThread() {
    const std::size_t index = threads.size();
    threads.emplace_back([this, index] {
      BusyTable::slot() = index;
      busy.enter();
      if (index < options.threads) {
        io.run();
        return;
      }
      while (!stopping.load()) {
        if (index < wanted.load()) {
          io.run_one_for(std::chrono::milliseconds(50));
          continue;
        }
        std::unique_lock<std::mutex> lock(mutex);
        woken.wait(lock, [&] { return stopping.load() || index < wanted.load(); });
      }
    });
  }

  // Every 10 ms: when every serving thread has been in its handler for longer than stuckAfter
  // (waiting for the database, or for another request's load), doubles the serving threads, up
  // to maxThreads, so that requests the cache could answer at once are not queued behind them.
  // After a second in which they never were all stuck, parks the extra ones again.
  // Threads that are slow because they wait for a CPU (the machine is busy) do not count as
  // stuck: more threads would only share the same CPU and make every request slower.
  void monitor() {
    std::unique_lock<std::mutex> lock(mutex);
    int calmTicks = 0;
    // Each serving thread's CPU wait at the previous tick, while every thread was stuck.
    std::vector<std::int64_t> cpuWait;
    while (!stopping.load()) {
      woken.wait_for(lock, std::chrono::milliseconds(10));
      const std::size_t serving = wanted.load();
      if (busy.olderThan(serving, options.stuckAfter) < serving) {
        cpuWait.clear();
        if (serving > options.threads && ++calmTicks >= 100) {
          wanted.store(options.threads);
          calmTicks = 0;
        }
        continue;
      }
      calmTicks = 0;
      // Read only while all are stuck (rarely): one tick to learn, the next to compare.
      bool starved = cpuWait.size() != serving;
      cpuWait.resize(serving, -1);
      for (std::size_t i = 0; i < serving; ++i) {
        const std::int64_t waited = busy.waitedForCpu(i);
        starved = starved || (cpuWait[i] >= 0 && waited - cpuWait[i] > kStarved.count());
        cpuWait[i] = waited;
      }
      if (starved) {
        continue;
      }
      const std::size_t more = std::min(options.maxThreads, serving * 2);
      while (threads.size() < more) {
        startThread();
      }
      if (more > serving) {
        wanted.store(more);
        woken.notify_all();
        cpuWait.clear();
      }
    }
  }

  ServerOptions options;
  Handler handler;
  BusyTable busy;
  Collapser collapser;
  net::io_context io;
  tcp::acceptor acceptor;
  std::mutex mutex; // guards threads; parked threads and the monitor wait on woken
  std::condition_variable woken;
  std::vector<std::thread> threads;
  std::atomic<std::size_t> wanted{0}; // threads with a lower index serve
  std::atomic<bool> stopping{false};
};

Server::Server(const ServerOptions& options, Handler handler)
    : impl_(std::make_unique<Impl>(options, std::move(handler))) {}

Server::~Server() = default;

void Server::run() {
  impl_->accept();
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->wanted.store(impl_->options.threads);
    for (std::size_t i = 0; i < impl_->options.threads; ++i) {
      impl_->startThread();
    }
  }
  impl_->monitor(); // until stop()
  impl_->io.stop();
  for (auto& thread : impl_->threads) {
    thread.join();
  }
}

std::uint64_t Server::collapsed() const {
  return impl_->collapser.collapsed();
}

void Server::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stopping.store(true);
  }
  impl_->woken.notify_all();
}

} // namespace products
