// The products API (examples/products_api) as a child process, through real HTTP, against a real
// redis-server and a real SQLite file. Each test starts its own service on a free loopback port,
// with a fresh database in a temporary directory, a 20 ms query delay and its own key namespace.
#include "support/catch.hpp"
#include "support/redis_server.hpp"
#include "support/sync.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/hiredis_client.hpp>
#include <cacheaside/http.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef PRODUCTS_API_BINARY
#error "PRODUCTS_API_BINARY must name the products_api executable"
#endif

namespace {

using nlohmann::json;

// A temporary directory, removed with everything in it.
class TempDir {
public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "products_api_test.XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

private:
  std::filesystem::path path_;
};

// The service, started by fork/exec and stopped by its PID.
class Service {
public:
  Service(const std::string& redisHost, int redisPort)
      : dbPath_((dir_.path() / "products.db").string()),
        namespace_(testsupport::uniqueNamespace("products_api")) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = testsupport::freeLoopbackPort();
      if (start(redisHost, redisPort)) {
        return;
      }
    }
    throw std::runtime_error("products_api did not start; see " + log());
  }

  // Against the shared test Redis.
  Service() : Service(testsupport::testRedis().host, testsupport::testRedis().port) {}

  ~Service() { stop(); }

  // SIGTERM, then the exit status as waitpid reports it (-1 when it was not running).
  int stop() {
    int status = -1;
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    return status;
  }
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(std::chrono::seconds(5));
    c.set_read_timeout(std::chrono::seconds(30));
    return c;
  }

  const std::string& dbPath() const { return dbPath_; }
  const std::string& keyNamespace() const { return namespace_; }
  std::string log() const { return (dir_.path() / "service.log").string(); }

  // Whether the process is still running (reaps it if it exited).
  bool alive() {
    int status = 0;
    if (pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
    }
    return pid_ > 0;
  }

private:
  bool start(const std::string& redisHost, int redisPort) {
    std::vector<std::string> args{PRODUCTS_API_BINARY,
                                  "--port",
                                  std::to_string(port_),
                                  "--redis",
                                  redisHost + ":" + std::to_string(redisPort),
                                  "--db",
                                  dbPath_,
                                  "--delay-ms",
                                  "20",
                                  "--namespace",
                                  namespace_};
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const std::string logPath = log();
    const pid_t pid = ::fork();
    if (pid < 0) {
      throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
      const int fd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    // Ready when /healthz answers; failed when the process exits (most likely the port was
    // taken between freeLoopbackPort() and bind).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    httplib::Client probe("127.0.0.1", port_);
    probe.set_connection_timeout(std::chrono::milliseconds(200));
    while (std::chrono::steady_clock::now() < deadline) {
      if (!alive()) {
        return false;
      }
      if (const auto res = probe.Get("/healthz"); res && res->status == 200) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  TempDir dir_;
  std::string dbPath_;
  std::string namespace_;
  int port_ = 0;
  pid_t pid_ = -1;
};

struct Reply {
  int status = 0;
  std::string body;
  std::string xCache;
  std::string etag;
  httplib::Headers headers;
  json parsed() const { return json::parse(body); }
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? "(absent)" : it->second;
  }
};

Reply call(const httplib::Result& res) {
  REQUIRE(res);
  Reply r;
  r.status = res->status;
  r.body = res->body;
  r.xCache = res->get_header_value("X-Cache");
  r.etag = res->get_header_value("ETag");
  r.headers = res->headers;
  return r;
}

Reply get(const Service& s, const std::string& path, const httplib::Headers& headers = {}) {
  return call(s.client().Get(path.c_str(), headers));
}

Reply post(const Service& s, const std::string& body) {
  return call(s.client().Post("/api/products", body, "application/json"));
}

Reply put(const Service& s, std::int64_t id, const std::string& body) {
  return call(
      s.client().Put(("/api/products/" + std::to_string(id)).c_str(), body, "application/json"));
}

Reply del(const Service& s, std::int64_t id) {
  return call(s.client().Delete(("/api/products/" + std::to_string(id)).c_str()));
}

// The value of an unlabelled or labelled sample in /metrics.
std::uint64_t metric(const Service& s, const std::string& sample) {
  const Reply r = get(s, "/metrics");
  REQUIRE(r.status == 200);
  const std::string needle = "\n" + sample + " ";
  const auto at = r.body.find(needle);
  REQUIRE(at != std::string::npos);
  return std::stoull(r.body.substr(at + needle.size()));
}

std::uint64_t dbQueries(const Service& s) {
  return metric(s, "products_api_db_queries_total");
}

// Direct access to the service's SQLite file, behind its back (no invalidation).
class Sql {
public:
  explicit Sql(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      throw std::runtime_error("cannot open " + path);
    }
    sqlite3_busy_timeout(db_, 5000);
  }
  ~Sql() { sqlite3_close_v2(db_); }
  Sql(const Sql&) = delete;
  Sql& operator=(const Sql&) = delete;

  // Runs one statement with text parameters; returns the first column of each row as text.
  std::vector<std::string> run(const char* sql, const std::vector<std::string>& params = {}) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr) != SQLITE_OK) {
      throw std::runtime_error(sqlite3_errmsg(db_));
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
    for (std::size_t i = 0; i < params.size(); ++i) {
      sqlite3_bind_text(raw, static_cast<int>(i + 1), params[i].c_str(), -1, SQLITE_TRANSIENT);
    }
    std::vector<std::string> rows;
    int rc = 0;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      const auto* text = sqlite3_column_text(raw, 0);
      rows.emplace_back(text != nullptr ? reinterpret_cast<const char*>(text) : "");
    }
    if (rc != SQLITE_DONE) {
      throw std::runtime_error(sqlite3_errmsg(db_));
    }
    return rows;
  }

  std::int64_t count(const char* sql, const std::vector<std::string>& params = {}) {
    return std::stoll(run(sql, params).at(0));
  }

private:
  sqlite3* db_ = nullptr;
};

std::vector<std::int64_t> ids(const json& list) {
  std::vector<std::int64_t> out;
  for (const auto& p : list) {
    out.push_back(p.at("id").get<std::int64_t>());
  }
  return out;
}

bool contains(const json& list, std::int64_t id) {
  const auto all = ids(list);
  return std::find(all.begin(), all.end(), id) != all.end();
}

std::optional<json> findProduct(const json& list, std::int64_t id) {
  for (const auto& p : list) {
    if (p.at("id").get<std::int64_t>() == id) {
      return p;
    }
  }
  return std::nullopt;
}

std::string productBody(const std::string& name, const std::string& category, double price) {
  return json{{"name", name}, {"category", category}, {"price", price}}.dump();
}

// The Redis key of a cached GET, as the service builds it.
std::string redisKeyOf(const Service& s, const std::string& path, const std::string& category) {
  cacheaside::http::Request r;
  r.path = path;
  if (!category.empty()) {
    r.query.emplace_back("category", category);
  }
  return s.keyNamespace() + ":{" + *cacheaside::http::cacheKey(r, cacheaside::http::Policy{}) + "}";
}

} // namespace

TEST_CASE("a category list is loaded from SQLite (MISS), then served from Redis (HIT)") {
  Service s;
  Sql sql(s.dbPath());
  const std::uint64_t before = dbQueries(s);
  const Reply first = get(s, "/api/products?category=books");
  CHECK(first.status == 200);
  CHECK(first.xCache == "MISS");
  CHECK(dbQueries(s) == before + 1);
  const json list = first.parsed();
  CHECK(static_cast<std::int64_t>(list.size()) ==
        sql.count("SELECT count(*) FROM products WHERE category = ?1", {"books"}));
  CHECK(list.size() > 10);
  for (const auto& p : list) {
    CHECK(p.at("category") == "books");
  }

  const Reply second = get(s, "/api/products?category=books");
  CHECK(second.status == 200);
  CHECK(second.xCache == "HIT");
  CHECK(second.body == first.body);
  CHECK(second.etag == first.etag);
  CHECK(dbQueries(s) == before + 1);

  // The response is in Redis under the documented key: envelope header, then the record.
  cacheaside::HiredisClient redis(testsupport::clientOptions());
  const cacheaside::Reply stored =
      testsupport::cmd(redis, {"GET", redisKeyOf(s, "/api/products", "books")});
  REQUIRE(stored.type == cacheaside::Reply::Type::String);
  CHECK(static_cast<unsigned char>(stored.str[0]) == 0xCA);
  CHECK(stored.str.find(first.body) != std::string::npos);
}

TEST_CASE("the list without a category has every product, and differs from a category list") {
  Service s;
  Sql sql(s.dbPath());
  const Reply all = get(s, "/api/products");
  REQUIRE(all.status == 200);
  CHECK(static_cast<std::int64_t>(all.parsed().size()) ==
        sql.count("SELECT count(*) FROM products"));
  CHECK(sql.count("SELECT count(DISTINCT category) FROM products") >= 4);
  const Reply toys = get(s, "/api/products?category=toys");
  CHECK(toys.xCache == "MISS");
  CHECK(toys.parsed().size() < all.parsed().size());
  CHECK(get(s, "/api/products").xCache == "HIT");
}

TEST_CASE("one product: 200 with its fields, MISS then HIT") {
  Service s;
  Sql sql(s.dbPath());
  const std::string name = sql.run("SELECT name FROM products WHERE id = ?1", {"42"}).at(0);
  const Reply first = get(s, "/api/products/42");
  REQUIRE(first.status == 200);
  CHECK(first.xCache == "MISS");
  CHECK(first.parsed().at("id") == 42);
  CHECK(first.parsed().at("name") == name);
  const Reply second = get(s, "/api/products/42");
  CHECK(second.xCache == "HIT");
  CHECK(second.body == first.body);
}

TEST_CASE("a missing id is 404, cached negatively, and a POST that creates it invalidates that") {
  Service s;
  Sql sql(s.dbPath());
  const std::int64_t next = sql.count("SELECT max(id) FROM products") + 1;
  const std::string path = "/api/products/" + std::to_string(next);
  const Reply first = get(s, path);
  CHECK(first.status == 404);
  CHECK(first.xCache == "MISS");
  CHECK(first.parsed().contains("error"));
  const std::uint64_t queries = dbQueries(s);
  const Reply second = get(s, path);
  CHECK(second.status == 404);
  CHECK(second.xCache == "HIT");
  CHECK(dbQueries(s) == queries);

  const Reply created = post(s, productBody("Brand new lamp", "garden", 12.5));
  REQUIRE(created.status == 201);
  REQUIRE(created.parsed().at("id") == next);
  const Reply after = get(s, path);
  CHECK(after.status == 200);
  CHECK(after.xCache == "MISS");
  CHECK(after.parsed().at("name") == "Brand new lamp");
}

TEST_CASE("POST invalidates the all list and its category list, and no other list") {
  Service s;
  for (const char* path : {"/api/products", "/api/products?category=books",
                           "/api/products?category=toys", "/api/products/1"}) {
    REQUIRE(get(s, path).xCache == "MISS");
    REQUIRE(get(s, path).xCache == "HIT");
  }
  const Reply created = post(s, productBody("Atlas of clouds", "books", 30));
  REQUIRE(created.status == 201);
  const auto id = created.parsed().at("id").get<std::int64_t>();
  CHECK(created.header("Location") == "/api/products/" + std::to_string(id));
  CHECK(created.parsed().at("category") == "books");

  const Reply all = get(s, "/api/products");
  CHECK(all.xCache == "MISS");
  CHECK(contains(all.parsed(), id));
  const Reply books = get(s, "/api/products?category=books");
  CHECK(books.xCache == "MISS");
  CHECK(contains(books.parsed(), id));
  const Reply toys = get(s, "/api/products?category=toys");
  CHECK(toys.xCache == "HIT");
  CHECK_FALSE(contains(toys.parsed(), id));
  CHECK(get(s, "/api/products/1").xCache == "HIT");
}

TEST_CASE("PUT that moves a product to another category: neither list serves stale data") {
  Service s;
  const Reply books = get(s, "/api/products?category=books");
  REQUIRE(books.status == 200);
  const auto id = books.parsed().at(0).at("id").get<std::int64_t>();
  const std::string item = "/api/products/" + std::to_string(id);
  const std::vector<std::string> paths{"/api/products", "/api/products?category=books",
                                       "/api/products?category=toys",
                                       "/api/products?category=garden", item};
  for (const std::string& path : paths) {
    get(s, path);
    REQUIRE(get(s, path).xCache == "HIT");
  }

  const Reply updated = put(s, id, productBody("Moved robot", "toys", 9.75));
  REQUIRE(updated.status == 200);
  CHECK(updated.parsed().at("category") == "toys");

  const Reply oldList = get(s, "/api/products?category=books");
  CHECK(oldList.xCache == "MISS");
  CHECK_FALSE(contains(oldList.parsed(), id));
  const Reply newList = get(s, "/api/products?category=toys");
  CHECK(newList.xCache == "MISS");
  const std::optional<json> moved = findProduct(newList.parsed(), id);
  REQUIRE(moved);
  CHECK(moved->at("name") == "Moved robot");
  CHECK(moved->at("price") == 9.75);
  const Reply all = get(s, "/api/products");
  CHECK(all.xCache == "MISS");
  const std::optional<json> inAll = findProduct(all.parsed(), id);
  REQUIRE(inAll);
  CHECK(inAll->at("category") == "toys");
  const Reply one = get(s, item);
  CHECK(one.xCache == "MISS");
  CHECK(one.parsed().at("name") == "Moved robot");
  // A category the write did not touch keeps its cached response.
  CHECK(get(s, "/api/products?category=garden").xCache == "HIT");
}

TEST_CASE("PUT within a category invalidates the item, the all list and that category") {
  Service s;
  const auto id = get(s, "/api/products?category=garden").parsed().at(0).at("id").get<int>();
  const std::string item = "/api/products/" + std::to_string(id);
  get(s, "/api/products");
  get(s, item);
  REQUIRE(get(s, "/api/products?category=garden").xCache == "HIT");
  REQUIRE(put(s, id, productBody("Renamed rake", "garden", 3)).status == 200);
  const Reply garden = get(s, "/api/products?category=garden");
  CHECK(garden.xCache == "MISS");
  REQUIRE(findProduct(garden.parsed(), id));
  CHECK(findProduct(garden.parsed(), id)->at("name") == "Renamed rake");
  CHECK(findProduct(get(s, "/api/products").parsed(), id)->at("name") == "Renamed rake");
  CHECK(get(s, item).parsed().at("name") == "Renamed rake");
}

TEST_CASE("a write invalidates the lists by their category's tag, not by their keys") {
  Service s;
  get(s, "/api/products?category=garden");
  get(s, "/api/products?category=books");
  get(s, "/api/products");
  cacheaside::HiredisClient redis(testsupport::clientOptions());
  const auto stored = [&](const std::string& category) {
    return testsupport::cmd(redis, {"GET", redisKeyOf(s, "/api/products", category)}).str;
  };
  const std::string gardenBefore = stored("garden"), booksBefore = stored("books");
  REQUIRE_FALSE(gardenBefore.empty());
  REQUIRE(post(s, productBody("Hose", "garden", 12)).status == 201);
  // The garden list's record is still there, untouched: its tag moved on, so it reads as a miss.
  CHECK(stored("garden") == gardenBefore);
  CHECK(testsupport::cmd(redis, {"EXISTS", s.keyNamespace() + ":tag:{category:garden}"}).integer ==
        1);
  CHECK(get(s, "/api/products?category=garden").xCache == "MISS");
  CHECK(get(s, "/api/products").xCache == "MISS");
  CHECK(get(s, "/api/products?category=books").xCache == "HIT");
  CHECK(stored("books") == booksBefore);
}

TEST_CASE("DELETE invalidates the item, the all list and its category list") {
  Service s;
  const json kitchen = get(s, "/api/products?category=kitchen").parsed();
  const auto id = kitchen.at(1).at("id").get<std::int64_t>();
  const std::string item = "/api/products/" + std::to_string(id);
  get(s, "/api/products");
  REQUIRE(get(s, item).status == 200);
  REQUIRE(get(s, item).xCache == "HIT");

  const Reply removed = del(s, id);
  CHECK(removed.status == 204);
  CHECK(removed.body.empty());
  const Reply gone = get(s, item);
  CHECK(gone.status == 404);
  CHECK(gone.xCache == "MISS");
  const Reply list = get(s, "/api/products?category=kitchen");
  CHECK(list.xCache == "MISS");
  CHECK_FALSE(contains(list.parsed(), id));
  CHECK(list.parsed().size() == kitchen.size() - 1);
  CHECK_FALSE(contains(get(s, "/api/products").parsed(), id));
  CHECK(del(s, id).status == 404);
}

TEST_CASE("PUT and DELETE of an unknown id are 404 and change nothing") {
  Service s;
  Sql sql(s.dbPath());
  const std::int64_t rows = sql.count("SELECT count(*) FROM products");
  const std::int64_t missing = sql.count("SELECT max(id) FROM products") + 100;
  CHECK(put(s, missing, productBody("x", "books", 1)).status == 404);
  CHECK(del(s, missing).status == 404);
  CHECK(sql.count("SELECT count(*) FROM products") == rows);
}

TEST_CASE("a matching If-None-Match is 304 without a body, and after a write the old ETag is not") {
  Service s;
  const Reply first = get(s, "/api/products/7");
  REQUIRE(first.status == 200);
  REQUIRE(first.etag.size() > 2);
  CHECK(first.etag.front() == '"');
  const Reply miss304 = get(s, "/api/products/7", {{"If-None-Match", first.etag}});
  CHECK(miss304.status == 304);
  CHECK(miss304.body.empty());
  CHECK(miss304.etag == first.etag);
  CHECK(miss304.xCache == "HIT");
  const Reply weak = get(s, "/api/products/7", {{"If-None-Match", "\"x\", W/" + first.etag}});
  CHECK(weak.status == 304);
  const Reply other = get(s, "/api/products/7", {{"If-None-Match", "\"not-it\""}});
  CHECK(other.status == 200);
  CHECK(other.body == first.body);

  REQUIRE(put(s, 7, productBody("Changed", "music", 1)).status == 200);
  const Reply changed = get(s, "/api/products/7", {{"If-None-Match", first.etag}});
  CHECK(changed.status == 200);
  CHECK(changed.etag != first.etag);
  CHECK(changed.parsed().at("name") == "Changed");
}

TEST_CASE("If-None-Match on a PUT is not answered 304: the write is applied and answered 200") {
  Service s;
  const Reply before = get(s, "/api/products/8");
  REQUIRE(before.status == 200);
  for (const std::string& condition : {before.etag, std::string("*")}) {
    const auto res =
        s.client().Put("/api/products/8", {{"If-None-Match", condition}},
                       productBody("Conditional " + condition, "music", 2), "application/json");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(json::parse(res->body).at("name") == "Conditional " + condition);
  }
  CHECK(get(s, "/api/products/8").parsed().at("name") == "Conditional *");
}

TEST_CASE("a request with Authorization or Cookie is never served from a cached response") {
  Service s;
  Sql sql(s.dbPath());
  const std::string path = "/api/products/3";
  const Reply anonymous = get(s, path);
  REQUIRE(get(s, path).xCache == "HIT");
  // Change the row behind the service's back: the cached response is now stale, so any request
  // served from it would show the old name.
  sql.run("UPDATE products SET name = ?1 WHERE id = ?2", {"Name only the database knows", "3"});
  REQUIRE(get(s, path).parsed().at("name") == anonymous.parsed().at("name"));

  const std::uint64_t queries = dbQueries(s);
  const Reply alice = get(s, path, {{"Authorization", "Bearer alice"}});
  CHECK(alice.xCache == "BYPASS");
  CHECK(alice.parsed().at("name") == "Name only the database knows");
  const Reply aliceAgain = get(s, path, {{"Authorization", "Bearer alice"}});
  CHECK(aliceAgain.xCache == "BYPASS");
  const Reply bob = get(s, path, {{"Authorization", "Bearer bob"}});
  CHECK(bob.xCache == "BYPASS");
  CHECK(bob.parsed().at("name") == "Name only the database knows");
  const Reply carol = get(s, path, {{"Cookie", "session=carol"}});
  CHECK(carol.xCache == "BYPASS");
  CHECK(carol.parsed().at("name") == "Name only the database knows");
  // Nor may a shared cache between them and the service store these responses.
  for (const Reply* r : {&alice, &bob, &carol}) {
    CHECK(r->header("Cache-Control") == "private");
    CHECK(r->header("Vary") == "Authorization, Cookie");
  }
  CHECK(anonymous.header("Cache-Control") == "(absent)");
  CHECK(dbQueries(s) == queries + 4);
  // Nor did their responses replace the shared one.
  CHECK(get(s, path).parsed().at("name") == anonymous.parsed().at("name"));
}

TEST_CASE("bad input: 400 with a JSON error, and the database is unchanged") {
  Service s;
  Sql sql(s.dbPath());
  const std::int64_t rows = sql.count("SELECT count(*) FROM products");
  const char* bodies[] = {
      "{\"name\": \"x\",",                                            // invalid JSON
      "[1, 2]",                                                       // not an object
      "{\"category\": \"books\", \"price\": 1}",                      // no name
      "{\"name\": \"x\", \"price\": 1}",                              // no category
      "{\"name\": \"x\", \"category\": \"books\"}",                   // no price
      "{\"name\": 5, \"category\": \"books\", \"price\": 1}",         // name not a string
      "{\"name\": \"\", \"category\": \"books\", \"price\": 1}",      // empty name
      "{\"name\": \"x\", \"category\": \"books\", \"price\": \"1\"}", // price a string
      "{\"name\": \"x\", \"category\": \"books\", \"price\": -1}",    // negative price
      "",
  };
  for (const char* body : bodies) {
    INFO(body);
    const Reply created = post(s, body);
    CHECK(created.status == 400);
    CHECK(created.parsed().at("error").is_string());
    CHECK(put(s, 5, body).status == 400);
  }
  CHECK(sql.count("SELECT count(*) FROM products") == rows);
  CHECK(get(s, "/api/products/5").parsed().at("name") ==
        sql.run("SELECT name FROM products WHERE id = ?1", {"5"}).at(0));

  for (const char* path :
       {"/api/products/abc", "/api/products/-1", "/api/products/1x", "/api/products?color=red",
        "/api/products?category=", "/api/products?category=toys&category=books"}) {
    INFO(path);
    const Reply r = get(s, path);
    CHECK(r.status == 400);
    CHECK(r.parsed().at("error").is_string());
  }
  const Reply noRoute = get(s, "/api/nothing-here");
  CHECK(noRoute.status == 404);
  CHECK(noRoute.parsed().contains("error"));
}

TEST_CASE("an oversized body is 413 and creates nothing") {
  Service s;
  Sql sql(s.dbPath());
  const std::int64_t rows = sql.count("SELECT count(*) FROM products");
  const std::string big = productBody(std::string(64 * 1024, 'a'), "books", 1);
  const Reply r = post(s, big);
  CHECK(r.status == 413);
  CHECK(sql.count("SELECT count(*) FROM products") == rows);
}

TEST_CASE("a database failure is 503, and the 503 is not cached") {
  Service s;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(s.dbPath() + suffix);
  }
  const Reply first = get(s, "/api/products?category=books");
  CHECK(first.status == 503);
  CHECK(first.parsed().at("error").is_string());
  const Reply second = get(s, "/api/products?category=books");
  CHECK(second.status == 503);
  CHECK(second.xCache != "HIT");
  CHECK(post(s, productBody("x", "books", 1)).status == 503);
  CHECK(s.alive());
}

TEST_CASE("GET /metrics is Prometheus text with the cache's counters") {
  Service s;
  get(s, "/api/products/11");
  get(s, "/api/products/11");
  get(s, "/api/products/11");
  const Reply m = get(s, "/metrics");
  CHECK(m.status == 200);
  CHECK(m.header("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
  CHECK(m.body.find("# TYPE cacheaside_hits_total counter\n") != std::string::npos);
  CHECK(metric(s, "cacheaside_hits_total{cache=\"responses\"}") == 2);
  CHECK(metric(s, "cacheaside_misses_total{cache=\"responses\"}") == 1);
  CHECK(metric(s, "cacheaside_loads_total{cache=\"responses\"}") == 1);
  CHECK(metric(s, "cacheaside_redis_errors_total{cache=\"responses\"}") == 0);
  CHECK(metric(s, "products_api_responses_total{x_cache=\"HIT\"}") == 2);
  CHECK(metric(s, "products_api_responses_total{x_cache=\"MISS\"}") == 1);
  CHECK(dbQueries(s) == 1);
}

TEST_CASE("with nothing listening at the Redis address, the service answers from SQLite") {
  Service s("127.0.0.1", testsupport::freeLoopbackPort());
  Sql sql(s.dbPath());
  for (int i = 0; i < 2; ++i) {
    const Reply r = get(s, "/api/products?category=music");
    CHECK(r.status == 200);
    CHECK(r.xCache == "MISS");
    CHECK(static_cast<std::int64_t>(r.parsed().size()) ==
          sql.count("SELECT count(*) FROM products WHERE category = ?1", {"music"}));
  }
  const Reply created = post(s, productBody("Offline drum", "music", 5));
  CHECK(created.status == 201);
  const auto id = created.parsed().at("id").get<std::int64_t>();
  CHECK(get(s, "/api/products/" + std::to_string(id)).parsed().at("name") == "Offline drum");
  CHECK(metric(s, "products_api_invalidation_failures_total") == 1);
  CHECK(metric(s, "cacheaside_redis_errors_total{cache=\"responses\"}") >= 3);
  CHECK(dbQueries(s) == 4);
}

TEST_CASE("when Redis dies under the service, it keeps answering from SQLite") {
  testsupport::RedisServer redis;
  Service s(redis.host(), redis.port());
  const std::string path = "/api/products?category=sports";
  const Reply warm = get(s, path);
  REQUIRE(get(s, path).xCache == "HIT");
  redis.kill();
  const std::uint64_t queries = dbQueries(s);
  const Reply r = get(s, path);
  CHECK(r.status == 200);
  CHECK(r.xCache == "MISS");
  CHECK(r.body == warm.body);
  CHECK(dbQueries(s) == queries + 1);
  CHECK(put(s, 4, productBody("Still writable", "sports", 2)).status == 200);
  CHECK(get(s, "/api/products/4").parsed().at("name") == "Still writable");
}

TEST_CASE("SIGTERM stops the service cleanly (exit 0), with its writes committed") {
  auto s = std::make_unique<Service>();
  REQUIRE(post(*s, productBody("Survives restarts", "music", 1)).status == 201);
  const int status = s->stop();
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_FALSE(s->alive());
  Sql sql(s->dbPath());
  CHECK(sql.count("SELECT count(*) FROM products WHERE name = ?1", {"Survives restarts"}) == 1);
}

TEST_CASE("100 clients opening connections at once for a cold list: one database query, one body") {
  Service s;
  const std::uint64_t before = dbQueries(s);
  constexpr int kClients = 100;
  testsupport::Latch start(kClients);
  std::vector<Reply> replies(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      httplib::Client c = s.client();
      start.arriveAndWait();
      const auto res = c.Get("/api/products?category=toys");
      if (res) {
        replies[static_cast<std::size_t>(i)].status = res->status;
        replies[static_cast<std::size_t>(i)].body = res->body;
      }
    });
  }
  for (auto& t : clients) {
    t.join();
  }
  CHECK(dbQueries(s) == before + 1);
  for (const Reply& r : replies) {
    CHECK(r.status == 200);
    CHECK(r.body == replies.front().body);
  }
  CHECK(replies.front().parsed().size() > 10);
}

TEST_CASE("one keep-alive connection serves many requests, and a wrong method is 405") {
  Service s;
  httplib::Client c = s.client();
  c.set_keep_alive(true);
  REQUIRE(c.Get("/api/products/9"));
  for (int i = 0; i < 50; ++i) {
    const auto res = c.Get("/api/products/9");
    REQUIRE(res);
    CHECK(res->get_header_value("X-Cache") == "HIT");
  }
  const auto patch = c.Patch("/api/products/9", "{}", "application/json");
  REQUIRE(patch);
  CHECK(patch->status == 405);
  CHECK(patch->get_header_value("Allow") == "GET, HEAD, PUT, DELETE");
  const auto head = c.Head("/api/products/9");
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->body.empty());
  CHECK(head->get_header_value("Content-Length") ==
        std::to_string(get(s, "/api/products/9").body.size()));
}
