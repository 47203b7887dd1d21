// products::Server (examples/products_api/server.cpp) in this process, on a free loopback port,
// with handlers the test controls: request collapsing answers the identical GETs that arrive
// during a run with one later run, never with the run in progress.
#include "support/catch.hpp"
#include "support/redis_server.hpp"
#include "support/sync.hpp"

#include "server.hpp"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using products::Incoming;
using products::Outgoing;

std::string body(const httplib::Result& r) {
  return r && r->status == 200 ? r->body : "<none>";
}

// GET /x answers the data version; the first GET blocks until released. POST /x bumps the
// version. GETs collapse on their path.
class App {
public:
  App() : port_(testsupport::freeLoopbackPort()) {
    products::ServerOptions options;
    options.port = port_;
    options.threads = 2;
    options.collapseKey = [](const Incoming& in) -> std::optional<std::string> {
      if (in.method == "GET") {
        return in.path;
      }
      return std::nullopt;
    };
    server_.emplace(options, [this](const Incoming& in) { return handle(in); });
    thread_ = std::thread([this] { server_->run(); });
    // A first request from this thread: cpp-httplib builds its function-local statics (std::regex)
    // here, not in two client threads at once, which TSan flags inside the uninstrumented library.
    if (body(client().Get("/warm")) != "warm") {
      throw std::runtime_error("the server did not answer GET /warm");
    }
  }
  ~App() {
    release.countDown();
    server_->stop();
    thread_.join();
  }
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(std::chrono::seconds(5));
    c.set_read_timeout(std::chrono::seconds(10));
    return c;
  }
  std::uint64_t collapsed() const { return server_->collapsed(); }
  int runs() const { return runs_.load(); }

  // Until the server has collapsed n requests; throws after 10 s.
  void waitCollapsed(std::uint64_t n) const {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (collapsed() < n) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("no request was collapsed within 10 s");
      }
      std::this_thread::yield();
    }
  }

  testsupport::Latch entered{1}; // the first GET is in its handler
  testsupport::Latch release{1}; // lets the first GET answer

private:
  Outgoing handle(const Incoming& in) {
    Outgoing out;
    out.contentType = "text/plain";
    if (in.path == "/warm") {
      out.body = "warm";
      return out;
    }
    if (in.method == "POST") {
      ++version_;
      out.body = "written";
      return out;
    }
    const int version = version_.load();
    if (++runs_ == 1) {
      entered.countDown();
      release.wait();
    }
    out.body = std::to_string(version);
    return out;
  }

  int port_;
  std::atomic<int> version_{0};
  std::atomic<int> runs_{0};
  std::optional<products::Server> server_;
  std::thread thread_;
};

} // namespace

TEST_CASE("identical GETs that arrive during a run share the next run and its response") {
  App app;
  std::string first;
  std::string second;
  std::string third;
  std::thread a([&] { first = body(app.client().Get("/x")); });
  app.entered.wait();
  std::thread b([&] { second = body(app.client().Get("/x")); });
  std::thread c([&] { third = body(app.client().Get("/x")); });
  app.waitCollapsed(2);
  app.release.countDown();
  a.join();
  b.join();
  c.join();
  CHECK(first == "0");
  CHECK(second == "0");
  CHECK(third == "0");
  CHECK(app.runs() == 2); // the first request's run, then one for both that waited
  CHECK(app.collapsed() == 2);
}

TEST_CASE("a GET sent after a write is answered gets a response from after the write") {
  App app;
  std::string first;
  std::string after;
  std::thread a([&] { first = body(app.client().Get("/x")); });
  app.entered.wait();
  // The first GET's run read version 0 and is still running.
  REQUIRE(body(app.client().Post("/x", "", "text/plain")) == "written");
  std::thread b([&] { after = body(app.client().Get("/x")); });
  app.waitCollapsed(1);
  app.release.countDown();
  a.join();
  b.join();
  CHECK(first == "0");
  CHECK(after == "1"); // joined to the run in progress, it would have been "0"
  CHECK(app.runs() == 2);
}
