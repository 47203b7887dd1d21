// products_api: an HTTP JSON API over a slow SQLite database whose GET responses are cached in
// Redis (cacheaside::http::serve) and whose writes invalidate exactly the responses they change:
// an item by its key, the lists by the tag of each category they show (see categoryTag).
// The HTTP server is Boost.Beast (server.hpp).
//
//   products_api [--port N] [--redis HOST:PORT] [--db PATH] [--delay-ms N] [--ttl-s N]
//                [--namespace NS] [--seed N] [--threads N] [--max-threads N]
//
// Each flag may also come from the environment: PRODUCTS_API_PORT, PRODUCTS_API_REDIS,
// PRODUCTS_API_DB, PRODUCTS_API_DELAY_MS, PRODUCTS_API_TTL_S, PRODUCTS_API_NAMESPACE,
// PRODUCTS_API_SEED, PRODUCTS_API_THREADS, PRODUCTS_API_MAX_THREADS. Listens on 127.0.0.1 only.
// Routes:
//   GET    /api/products[?category=C]   the list, by id (every product without a category)
//   GET    /api/products/{id}           one product; 404 (cached negatively) when missing
//   POST   /api/products                {"name", "category", "price"} -> 201
//   PUT    /api/products/{id}           {"name", "category", "price"} -> 200
//   DELETE /api/products/{id}           -> 204
//   GET    /metrics                     Prometheus text: cache statistics and service counters
//   GET    /healthz                     200 once the service is up
#include "db.hpp"
#include "server.hpp"

#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>
#include <cacheaside/http.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <optional>
#include <pthread.h>
#include <signal.h>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

namespace http = cacheaside::http;
using products::Database;
using products::DbError;
using products::Incoming;
using products::Outgoing;
using products::Product;
using products::ProductInput;

constexpr std::size_t kMaxBodyBytes = 16 * 1024;
constexpr const char* kListPath = "/api/products";

struct Config {
  int port = 8080;
  std::string redisHost = "127.0.0.1";
  int redisPort = 6379;
  std::string dbPath = "products.db";
  long delayMs = 200;
  long ttlSeconds = 600;
  std::string keyNamespace = "products_api";
  int seed = 1000;
  long threads = 2;
  long maxThreads = 256;
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(
      stderr,
      "products_api: %s\nusage: products_api [--port N] [--redis HOST:PORT] [--db PATH] "
      "[--delay-ms N] [--ttl-s N] [--namespace NS] [--seed N] [--threads N] [--max-threads N]\n",
      problem.c_str());
  std::exit(2);
}

long number(const std::string& name, const std::string& text, long low, long high) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < low || value > high) {
    usage(name + " must be an integer in [" + std::to_string(low) + ", " + std::to_string(high) +
          "], got '" + text + "'");
  }
  return value;
}

void apply(Config& config, const std::string& name, const std::string& value) {
  if (name == "port") {
    config.port = static_cast<int>(number(name, value, 1, 65535));
  } else if (name == "redis") {
    const auto colon = value.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      usage("redis must be HOST:PORT, got '" + value + "'");
    }
    config.redisHost = value.substr(0, colon);
    config.redisPort = static_cast<int>(number(name, value.substr(colon + 1), 1, 65535));
  } else if (name == "db") {
    config.dbPath = value;
  } else if (name == "delay-ms") {
    config.delayMs = number(name, value, 0, 60000);
  } else if (name == "ttl-s") {
    config.ttlSeconds = number(name, value, 1, 7 * 86400);
  } else if (name == "namespace") {
    if (value.empty()) {
      usage("namespace must not be empty");
    }
    config.keyNamespace = value;
  } else if (name == "seed") {
    config.seed = static_cast<int>(number(name, value, 0, 1000000));
  } else if (name == "threads") {
    config.threads = number(name, value, 1, 4096);
  } else if (name == "max-threads") {
    config.maxThreads = number(name, value, 1, 4096);
  } else {
    usage("unknown option --" + name);
  }
}

Config parseConfig(int argc, char** argv) {
  Config config;
  const std::pair<const char*, const char*> env[] = {
      {"PRODUCTS_API_PORT", "port"},
      {"PRODUCTS_API_REDIS", "redis"},
      {"PRODUCTS_API_DB", "db"},
      {"PRODUCTS_API_DELAY_MS", "delay-ms"},
      {"PRODUCTS_API_TTL_S", "ttl-s"},
      {"PRODUCTS_API_NAMESPACE", "namespace"},
      {"PRODUCTS_API_SEED", "seed"},
      {"PRODUCTS_API_THREADS", "threads"},
      {"PRODUCTS_API_MAX_THREADS", "max-threads"},
  };
  for (const auto& [variable, name] : env) {
    if (const char* value = std::getenv(variable); value != nullptr && *value != '\0') {
      apply(config, name, value);
    }
  }
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage("help");
    }
    if (arg.rfind("--", 0) != 0 || i + 1 >= argc) {
      usage("expected --NAME VALUE, got '" + arg + "'");
    }
    apply(config, arg.substr(2), argv[++i]);
  }
  return config;
}

std::string errorBody(const std::string& message) {
  return nlohmann::json{{"error", message}}.dump();
}

Outgoing errorReply(int status, const std::string& message) {
  Outgoing out;
  out.status = status;
  out.body = errorBody(message);
  return out;
}

http::CachedResponse jsonResponse(int status, const nlohmann::json& body) {
  http::CachedResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

// A positive id in decimal; std::nullopt for anything else.
std::optional<std::int64_t> parseId(const std::string& text) {
  if (text.empty() || text.size() > 18) {
    return std::nullopt;
  }
  std::int64_t id = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    id = id * 10 + (c - '0');
  }
  return id;
}

// The JSON body of a POST or PUT; throws std::invalid_argument with the reason for a 400.
ProductInput parseInput(const std::string& body) {
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    throw std::invalid_argument("the body is not valid JSON");
  }
  if (!j.is_object()) {
    throw std::invalid_argument("the body must be a JSON object");
  }
  const auto text = [&](const char* field, std::size_t maxLength) {
    const auto it = j.find(field);
    if (it == j.end() || !it->is_string()) {
      throw std::invalid_argument(std::string("\"") + field + "\" must be a string");
    }
    std::string value = it->get<std::string>();
    if (value.empty() || value.size() > maxLength) {
      throw std::invalid_argument(std::string("\"") + field + "\" must have 1 to " +
                                  std::to_string(maxLength) + " bytes");
    }
    return value;
  };
  ProductInput input;
  input.name = text("name", 200);
  input.category = text("category", 64);
  const auto price = j.find("price");
  if (price == j.end() || !price->is_number() || !std::isfinite(price->get<double>()) ||
      price->get<double>() < 0) {
    throw std::invalid_argument("\"price\" must be a number, 0 or more");
  }
  input.price = price->get<double>();
  return input;
}

// The request as the cache sees it: a canonical path and query, the caller's headers.
http::Request cacheRequest(const Incoming& req, std::string path, http::Params query) {
  http::Request r;
  r.method = req.method;
  r.path = std::move(path);
  r.query = std::move(query);
  r.headers = req.headers;
  return r;
}

http::Params listQuery(const std::string& category) {
  http::Params query;
  if (!category.empty()) {
    query.emplace_back("category", category);
  }
  return query;
}

std::string itemPath(std::int64_t id) {
  return std::string(kListPath) + "/" + std::to_string(id);
}

// GETs of the same product URL that arrive while one is handled share the next run and its
// response (products::ServerOptions::collapseKey): the key is the path and the decoded query, for
// requests without a conditional or private header (their responses differ per request or per
// caller).
std::optional<std::string> collapseKey(const Incoming& req) {
  if (req.method != "GET" || req.path.rfind(kListPath, 0) != 0) {
    return std::nullopt;
  }
  for (const auto& [name, value] : req.headers) {
    if (http::equalsIgnoreCase(name, "If-None-Match") ||
        http::equalsIgnoreCase(name, "Authorization") || http::equalsIgnoreCase(name, "Cookie")) {
      return std::nullopt;
    }
  }
  // Each part length-prefixed: decoded parts may hold any byte, and two different requests
  // must never share a key.
  std::string key;
  const auto part = [&key](const std::string& text) {
    key += std::to_string(text.size()) + ':' + text;
  };
  part(req.path);
  for (const auto& [name, value] : req.query) {
    part(name);
    part(value);
  }
  return key;
}

class Service {
public:
  Service(const Config& config, Database& db, cacheaside::RedisClient& redis)
      : db_(db), responses_(redis, cacheOptions(config)) {
    // Products are public: requests with credentials are not cached (no identity function),
    // so that a per-user response can never reach another user, and every cached response is
    // one of the keys a write invalidates.
    listPolicy_.keyQueryParams = std::vector<std::string>{"category"};
    itemPolicy_.keyQueryParams = std::vector<std::string>{};
    itemPolicy_.notFound = [](const http::Request& r) {
      return jsonResponse(404, {{"error", "no product at " + r.path}});
    };
  }

  // Routes a request; unknown paths are 404, known paths with another method 405.
  Outgoing handle(const Incoming& req) {
    const std::string prefix = std::string(kListPath) + "/";
    if (req.path == kListPath) {
      if (req.method == "GET" || req.method == "HEAD") {
        return list(req);
      }
      if (req.method == "POST") {
        return create(req);
      }
      return notAllowed("GET, HEAD, POST");
    }
    if (req.path.compare(0, prefix.size(), prefix) == 0 &&
        req.path.find('/', prefix.size()) == std::string::npos && req.path.size() > prefix.size()) {
      const std::string id = req.path.substr(prefix.size());
      if (req.method == "GET" || req.method == "HEAD") {
        return item(req, id);
      }
      if (req.method == "PUT") {
        return update(req, id);
      }
      if (req.method == "DELETE") {
        return remove(id);
      }
      return notAllowed("GET, HEAD, PUT, DELETE");
    }
    if (req.path == "/metrics" && (req.method == "GET" || req.method == "HEAD")) {
      Outgoing out;
      out.contentType = http::kPrometheusContentType;
      out.body = metrics();
      return out;
    }
    if (req.path == "/healthz" && (req.method == "GET" || req.method == "HEAD")) {
      Outgoing out;
      out.contentType = "text/plain";
      out.body = "ok\n";
      return out;
    }
    return errorReply(404, "no such route");
  }

  // Where /metrics reads the server's count of collapsed requests; set before it serves.
  void countCollapsed(std::function<std::uint64_t()> count) { collapsed_ = std::move(count); }

private:
  static cacheaside::CacheOptions cacheOptions(const Config& config) {
    cacheaside::CacheOptions o;
    o.keyNamespace = config.keyNamespace;
    o.ttl = std::chrono::seconds(config.ttlSeconds);
    o.negativeTtl = std::chrono::seconds(std::min<long>(30, config.ttlSeconds));
    return o;
  }

  static Outgoing notAllowed(const char* allow) {
    Outgoing out = errorReply(405, "method not allowed");
    out.headers.emplace_back("Allow", allow);
    return out;
  }

  Outgoing list(const Incoming& req) {
    std::string category;
    for (const auto& [name, value] : req.query) {
      if (name != "category") {
        return errorReply(400, "unknown query parameter '" + name + "'");
      }
      if (!category.empty() || value.empty()) {
        return errorReply(400, "give one non-empty category");
      }
      category = value;
    }
    const http::Request cr = cacheRequest(req, kListPath, listQuery(category));
    cacheaside::CallOptions call; // a write invalidates the lists by their category's tag
    call.tags = {categoryTag(category)};
    return send(http::serve(
        responses_, cr, listPolicy_,
        [&] {
          return guarded([&] {
            const std::vector<Product> products = db_.list(category);
            return jsonResponse(200, products);
          });
        },
        call));
  }

  Outgoing item(const Incoming& req, const std::string& idText) {
    const auto id = parseId(idText);
    if (!id) {
      return errorReply(400, "the id must be a positive integer");
    }
    const http::Request cr = cacheRequest(req, itemPath(*id), {});
    return send(http::serve(responses_, cr, itemPolicy_, [&] {
      return guarded([&] {
        const std::optional<Product> product = db_.find(*id);
        return product ? jsonResponse(200, *product) : jsonResponse(404, {{"error", "not found"}});
      });
    }));
  }

  Outgoing create(const Incoming& req) {
    return write([&] {
      const ProductInput input = parseInput(req.body);
      const Product created = db_.create(input);
      invalidate({itemPath(created.id)}, {created.category});
      http::CachedResponse r = jsonResponse(201, created);
      r.location = itemPath(created.id);
      return r;
    });
  }

  Outgoing update(const Incoming& req, const std::string& idText) {
    return write([&] {
      const auto id = parseId(idText);
      if (!id) {
        throw std::invalid_argument("the id must be a positive integer");
      }
      const ProductInput input = parseInput(req.body);
      const auto changed = db_.update(*id, input);
      if (!changed) {
        return jsonResponse(404, {{"error", "no product at " + itemPath(*id)}});
      }
      // Both lists: the product leaves its old category and joins its new one.
      invalidate({itemPath(*id)}, {changed->first.category, changed->second.category});
      return jsonResponse(200, changed->second);
    });
  }

  Outgoing remove(const std::string& idText) {
    return write([&] {
      const auto id = parseId(idText);
      if (!id) {
        throw std::invalid_argument("the id must be a positive integer");
      }
      const auto removed = db_.remove(*id);
      if (!removed) {
        return jsonResponse(404, {{"error", "no product at " + itemPath(*id)}});
      }
      invalidate({itemPath(*id)}, {removed->category});
      http::CachedResponse none;
      none.status = 204;
      return none;
    });
  }

  // Runs a write: 400 for bad input, 503 when the database fails.
  // The invalidation has finished before the answer is sent, so a read the client sends after
  // it cannot be served the old response.
  template <typename Write> Outgoing write(Write&& run) {
    try {
      const http::CachedResponse r = run();
      Outgoing out;
      out.status = r.status;
      out.contentType = r.contentType;
      out.body = r.body;
      if (!r.location.empty()) {
        out.headers.emplace_back("Location", r.location);
      }
      return out;
    } catch (const std::invalid_argument& e) {
      return errorReply(400, e.what());
    } catch (const DbError& e) {
      std::fprintf(stderr, "products_api: %s\n", e.what());
      return errorReply(503, "the database is unavailable");
    }
  }

  // A read: a database failure becomes a 503, which serve() does not cache.
  template <typename Read> static http::CachedResponse guarded(Read&& read) {
    try {
      return read();
    } catch (const DbError& e) {
      std::fprintf(stderr, "products_api: %s\n", e.what());
      return jsonResponse(503, {{"error", "the database is unavailable"}});
    }
  }

  // The tag every list of products in category carries; "" (the list of all) stands for every
  // category.
  static std::string categoryTag(const std::string& category) {
    return category.empty() ? "category:*" : "category:" + category;
  }

  // After the commit: the items, and every list showing products of these categories (by
  // tag, whatever lists there are).
  void invalidate(const std::vector<std::string>& items,
                  const std::vector<std::string>& categories) {
    std::vector<std::string> keys, tags{categoryTag("")};
    for (const auto& path : items) {
      keys.push_back(*http::cacheKey(http::Request{"GET", path, {}, {}}, itemPolicy_));
    }
    for (const auto& category : categories) {
      const std::string tag = categoryTag(category);
      if (std::find(tags.begin(), tags.end(), tag) == tags.end()) {
        tags.push_back(tag);
      }
    }
    try {
      responses_.invalidate(keys);
      responses_.invalidateTags(tags);
    } catch (const cacheaside::Error& e) {
      // The write is committed; the cached responses stay until their TTL ends.
      invalidationFailures_.fetch_add(1, std::memory_order_relaxed);
      std::fprintf(stderr, "products_api: invalidation failed: %s\n", e.what());
    }
  }

  Outgoing send(http::Served served) {
    served_[static_cast<int>(served.cacheStatus)].fetch_add(1, std::memory_order_relaxed);
    Outgoing out;
    out.status = served.response.status;
    out.contentType = std::move(served.response.contentType);
    out.body = std::move(served.response.body);
    out.headers = std::move(served.headers);
    return out;
  }

  std::string metrics() const {
    std::string out = http::prometheusText(responses_.stats(), "responses");
    out += "# HELP products_api_responses_total Cacheable-route responses by X-Cache value.\n"
           "# TYPE products_api_responses_total counter\n";
    const http::CacheStatus statuses[] = {http::CacheStatus::Hit, http::CacheStatus::Miss,
                                          http::CacheStatus::Stale, http::CacheStatus::Bypass};
    for (const auto status : statuses) {
      out += std::string("products_api_responses_total{x_cache=\"") + http::xCacheValue(status) +
             "\"} " +
             std::to_string(served_[static_cast<int>(status)].load(std::memory_order_relaxed)) +
             '\n';
    }
    out += "# HELP products_api_collapsed_total GET requests answered with the response to an "
           "identical request in progress.\n"
           "# TYPE products_api_collapsed_total counter\n"
           "products_api_collapsed_total " +
           std::to_string(collapsed_ ? collapsed_() : 0) + '\n';
    out += "# HELP products_api_db_queries_total Queries sent to the database.\n"
           "# TYPE products_api_db_queries_total counter\n"
           "products_api_db_queries_total " +
           std::to_string(db_.queries()) + '\n';
    out += "# HELP products_api_invalidation_failures_total Writes whose cache invalidation "
           "failed.\n"
           "# TYPE products_api_invalidation_failures_total counter\n"
           "products_api_invalidation_failures_total " +
           std::to_string(invalidationFailures_.load(std::memory_order_relaxed)) + '\n';
    return out;
  }

  Database& db_;
  cacheaside::CacheAside<http::CachedResponse> responses_;
  http::Policy listPolicy_;
  http::Policy itemPolicy_;
  std::atomic<std::uint64_t> served_[4] = {};
  std::atomic<std::uint64_t> invalidationFailures_{0};
  std::function<std::uint64_t()> collapsed_;
};

} // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN); // hiredis writes to sockets the server may have closed
  const Config config = parseConfig(argc, argv);

  // SIGINT and SIGTERM are taken by a thread that stops the server: block them first, so that
  // every thread started after this inherits the mask.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);

  try {
    Database db(config.dbPath, std::chrono::milliseconds(config.delayMs), config.seed);

    cacheaside::HiredisOptions redisOptions;
    redisOptions.host = config.redisHost;
    redisOptions.port = config.redisPort;
    redisOptions.poolSize = 16;
    // A Redis call that fails sends the request to the database (200 ms) and five in a row open
    // the breaker: 50 ms (the default) is too short for a loaded 2-core machine, where a hit
    // that is merely waiting for a CPU would count as a Redis failure.
    redisOptions.commandTimeout = std::chrono::milliseconds(250);
    redisOptions.poolWaitTimeout = std::chrono::milliseconds(250);
    cacheaside::HiredisClient redis(redisOptions);

    Service service(config, db, redis);
    products::ServerOptions serverOptions;
    serverOptions.port = config.port;
    serverOptions.threads = static_cast<std::size_t>(config.threads);
    serverOptions.maxThreads = static_cast<std::size_t>(config.maxThreads);
    serverOptions.maxBodyBytes = kMaxBodyBytes;
    serverOptions.collapseKey = collapseKey;
    std::optional<products::Server> server;
    try {
      server.emplace(serverOptions,
                     [&service](const Incoming& req) { return service.handle(req); });
    } catch (const std::system_error& e) {
      std::fprintf(stderr, "products_api: cannot listen on 127.0.0.1:%d: %s\n", config.port,
                   e.what());
      return 1;
    }
    service.countCollapsed([&server] { return server->collapsed(); });
    std::thread stopper([&] {
      int sig = 0;
      sigwait(&stopSignals, &sig);
      server->stop();
    });
    std::printf("products_api: listening on http://127.0.0.1:%d (db %s, delay %ld ms, redis "
                "%s:%d, namespace %s, %ld threads)\n",
                config.port, config.dbPath.c_str(), config.delayMs, config.redisHost.c_str(),
                config.redisPort, config.keyNamespace.c_str(), config.threads);
    std::fflush(stdout);
    server->run();
    stopper.join();
    std::printf("products_api: stopped\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "products_api: %s\n", e.what());
    return 1;
  }
}
