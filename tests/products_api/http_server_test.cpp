// cacheaside/http.hpp's header rules through a real HTTP server (cpp-httplib, in this process,
// on a free loopback port) in front of a CacheAside<CachedResponse> on a real redis-server:
// per-caller responses are private, a cached 201 or 302 keeps its Location, If-None-Match on a
// write is not a 304.
#include "support/catch.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>
#include <cacheaside/http.hpp>

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

namespace {

namespace http = cacheaside::http;

// The server: GET /me answers per caller (identity = the Authorization header), GET /old is a
// cached 302, GET and POST /things answer 201 with a Location; handlers count their runs.
class App {
public:
  App()
      : redis_(testsupport::clientOptions()), cache_(redis_, options()),
        port_(testsupport::freeLoopbackPort()) {
    perCaller_.identity = [](const http::Request& r) {
      return r.header("Authorization").value_or("");
    };
    server_.Get("/me", [this](const httplib::Request& req, httplib::Response& res) {
      serve(req, res, perCaller_, [&] {
        http::CachedResponse r;
        r.body = "{\"caller\":\"" + req.get_header_value("Authorization") + "\"}";
        return r;
      });
    });
    server_.Get("/old", [this](const httplib::Request& req, httplib::Response& res) {
      serve(req, res, shared_, [] {
        http::CachedResponse r;
        r.status = 302;
        r.location = "/new";
        r.body = "{}";
        return r;
      });
    });
    const auto created = [this](const httplib::Request& req, httplib::Response& res) {
      serve(req, res, shared_, [] {
        http::CachedResponse r;
        r.status = 201;
        r.location = "/things/7";
        r.body = "{\"id\":7}";
        return r;
      });
    };
    server_.Get("/things", created);
    server_.Post("/things", created);
    if (!server_.bind_to_port("127.0.0.1", port_)) {
      throw std::runtime_error("cannot bind 127.0.0.1:" + std::to_string(port_));
    }
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~App() {
    server_.stop();
    thread_.join();
  }
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(std::chrono::seconds(5));
    c.set_read_timeout(std::chrono::seconds(30));
    return c;
  }
  int runs() const { return runs_.load(); }

private:
  static cacheaside::CacheOptions options() {
    cacheaside::CacheOptions o;
    o.keyNamespace = testsupport::uniqueNamespace("http_server");
    return o;
  }

  template <typename Handler>
  void serve(const httplib::Request& req, httplib::Response& res, const http::Policy& policy,
             Handler&& handler) {
    http::Request r;
    r.method = req.method;
    r.path = req.path;
    for (const auto& [name, value] : req.headers) {
      r.headers.emplace_back(name, value);
    }
    const http::Served served = http::serve(cache_, r, policy, [&] {
      ++runs_;
      return handler();
    });
    res.status = served.response.status;
    for (const auto& [name, value] : served.headers) {
      res.set_header(name, value);
    }
    if (served.response.status != 304) {
      res.set_content(served.response.body, served.response.contentType);
    }
  }

  cacheaside::HiredisClient redis_;
  cacheaside::CacheAside<http::CachedResponse> cache_;
  http::Policy perCaller_;
  http::Policy shared_;
  std::atomic<int> runs_{0};
  int port_;
  httplib::Server server_;
  std::thread thread_;
};

httplib::Result get(const App& app, const char* path, const httplib::Headers& headers = {}) {
  return app.client().Get(path, headers);
}

} // namespace

TEST_CASE("a response keyed per caller is Cache-Control: private, with a Vary on the private "
          "headers, on the miss and on the hit") {
  App app;
  for (const char* expected : {"MISS", "HIT"}) {
    const auto alice = get(app, "/me", {{"Authorization", "Bearer alice"}});
    REQUIRE(alice);
    CHECK(alice->status == 200);
    CHECK(alice->get_header_value("X-Cache") == expected);
    CHECK(alice->body == "{\"caller\":\"Bearer alice\"}");
    CHECK(alice->get_header_value("Cache-Control") == "private");
    CHECK(alice->get_header_value("Vary") == "Authorization, Cookie");
  }
  const auto bob = get(app, "/me", {{"Authorization", "Bearer bob"}});
  REQUIRE(bob);
  CHECK(bob->get_header_value("X-Cache") == "MISS");
  CHECK(bob->body == "{\"caller\":\"Bearer bob\"}");
  CHECK(bob->get_header_value("Cache-Control") == "private");
  CHECK(app.runs() == 2);
}

TEST_CASE("a response to a request without private headers is not marked private") {
  App app;
  const auto anonymous = get(app, "/old");
  REQUIRE(anonymous);
  CHECK_FALSE(anonymous->has_header("Cache-Control"));
  CHECK_FALSE(anonymous->has_header("Vary"));
}

TEST_CASE("a cached 302 and a cached 201 keep their Location on every hit") {
  App app;
  httplib::Client c = app.client();
  c.set_follow_location(false);
  for (const char* expected : {"MISS", "HIT", "HIT"}) {
    const auto moved = c.Get("/old");
    REQUIRE(moved);
    CHECK(moved->status == 302);
    CHECK(moved->get_header_value("X-Cache") == expected);
    CHECK(moved->get_header_value("Location") == "/new");
    const auto created = c.Get("/things");
    REQUIRE(created);
    CHECK(created->status == 201);
    CHECK(created->get_header_value("X-Cache") == expected);
    CHECK(created->get_header_value("Location") == "/things/7");
  }
  CHECK(app.runs() == 2);
}

TEST_CASE("If-None-Match matching a POST's response is not answered 304") {
  App app;
  const auto first = app.client().Post("/things", "{}", "application/json");
  REQUIRE(first);
  REQUIRE(first->status == 201);
  const std::string etag = first->get_header_value("ETag");
  REQUIRE(etag.size() > 2);
  for (const std::string& condition : {etag, std::string("*")}) {
    const auto again =
        app.client().Post("/things", {{"If-None-Match", condition}}, "{}", "application/json");
    REQUIRE(again);
    CHECK(again->status == 201);
    CHECK(again->body == "{\"id\":7}");
    CHECK(again->get_header_value("Location") == "/things/7");
  }
  CHECK(app.runs() == 3);
  // The same tag on a GET is a 304.
  REQUIRE(get(app, "/things")->status == 201);
  const auto conditional = get(app, "/things", {{"If-None-Match", etag}});
  REQUIRE(conditional);
  CHECK(conditional->status == 304);
}

TEST_CASE("a stale response served after its refresh failed is labelled X-Cache: STALE") {
  cacheaside::HiredisClient redis(testsupport::clientOptions());
  auto options = testsupport::cacheOptions("stale-label");
  options.ttl = std::chrono::milliseconds(100);
  options.ttlJitter = 0;
  options.staleWindow = std::chrono::seconds(60);
  cacheaside::CacheAside<http::CachedResponse> cache(redis, options);
  http::Request request;
  request.method = "GET";
  request.path = "/p";
  const http::Policy policy;
  const auto xCache = [](const http::Served& s) {
    for (const auto& [name, value] : s.headers) {
      if (name == "X-Cache") {
        return value;
      }
    }
    return std::string();
  };
  const http::Served first = http::serve(cache, request, policy, [] {
    http::CachedResponse r;
    r.body = "{\"v\":1}";
    return r;
  });
  CHECK(xCache(first) == "MISS");
  const std::string key =
      cacheaside::store::valueKey(options.keyNamespace, *http::cacheKey(request, policy));
  REQUIRE(testsupport::eventually([&] {
    const long long left = testsupport::cmd(redis, {"PTTL", key}).integer;
    return left >= 0 && left <= 60000; // inside the stale window
  }));
  const http::Served stale = http::serve(cache, request, policy, []() -> http::CachedResponse {
    throw std::runtime_error("the database is down");
  });
  CHECK(xCache(stale) == "STALE");
  CHECK(stale.response.body == "{\"v\":1}");
  CHECK(cache.stats().failSafes == 1);
}
