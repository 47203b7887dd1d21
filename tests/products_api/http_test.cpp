// cacheaside/http.hpp without Redis or HTTP: key normalization, ETag and If-None-Match, the
// private-header rule, the stored record, and serve() over an in-memory cache.
#include "support/catch.hpp"

#include <cacheaside/http.hpp>

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace http = cacheaside::http;

namespace {

http::Request get(std::string path, http::Params query = {}, http::Params headers = {}) {
  http::Request r;
  r.method = "GET";
  r.path = std::move(path);
  r.query = std::move(query);
  r.headers = std::move(headers);
  return r;
}

// Stands for CacheAside<CachedResponse>: stores what the loader returns (an empty optional as
// "not found"), never what it throws.
struct MapCache {
  std::map<std::string, std::optional<http::CachedResponse>> entries;

  template <typename Loader>
  std::optional<http::CachedResponse> getOrLoad(std::string_view key, Loader&& loader,
                                                const cacheaside::CallOptions& = {},
                                                cacheaside::Outcome* = nullptr) {
    const auto it = entries.find(std::string(key));
    if (it != entries.end()) {
      return it->second;
    }
    std::optional<http::CachedResponse> loaded = loader();
    entries.emplace(std::string(key), loaded);
    return loaded;
  }
};

std::string header(const http::Served& served, std::string_view name) {
  for (const auto& [n, v] : served.headers) {
    if (http::equalsIgnoreCase(n, name)) {
      return v;
    }
  }
  return "(absent)";
}

http::CachedResponse response(int status, std::string body) {
  http::CachedResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

} // namespace

TEST_CASE("query parameters are sorted by name, so their order does not change the key") {
  const http::Policy policy;
  const auto a = http::cacheKey(get("/p", {{"b", "2"}, {"a", "1"}}), policy);
  const auto b = http::cacheKey(get("/p", {{"a", "1"}, {"b", "2"}}), policy);
  REQUIRE(a);
  CHECK(*a == "GET /p?a=1&b=2");
  CHECK(a == b);
}

TEST_CASE("repeated query parameters keep their relative order") {
  const http::Policy policy;
  CHECK(*http::cacheKey(get("/p", {{"x", "2"}, {"a", "0"}, {"x", "1"}}), policy) ==
        "GET /p?a=0&x=2&x=1");
  CHECK(http::cacheKey(get("/p", {{"x", "2"}, {"x", "1"}}), policy) !=
        http::cacheKey(get("/p", {{"x", "1"}, {"x", "2"}}), policy));
}

TEST_CASE("separators inside names and values are encoded, so different queries never share a "
          "key") {
  const http::Policy policy;
  const auto one = http::cacheKey(get("/p", {{"a", "1&b=2"}}), policy);
  const auto two = http::cacheKey(get("/p", {{"a", "1"}, {"b", "2"}}), policy);
  CHECK(one != two);
  CHECK(*one == "GET /p?a=1%26b%3D2");
  CHECK(*http::cacheKey(get("/a b|c"), policy) == "GET /a%20b%7Cc");
  CHECK(http::cacheKey(get("/p", {{"a", ""}}), policy) != http::cacheKey(get("/p"), policy));
}

TEST_CASE("only GET and HEAD are cached, and HEAD shares GET's key") {
  const http::Policy policy;
  http::Request head = get("/p", {{"q", "1"}});
  head.method = "HEAD";
  CHECK(http::cacheKey(head, policy) == http::cacheKey(get("/p", {{"q", "1"}}), policy));
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "get"}) {
    http::Request r = get("/p");
    r.method = method;
    CHECK_FALSE(http::cacheKey(r, policy));
  }
}

TEST_CASE("with keyQueryParams, other parameters are not part of the key") {
  http::Policy policy;
  policy.keyQueryParams = std::vector<std::string>{"category"};
  CHECK(*http::cacheKey(get("/p", {{"utm", "x"}, {"category", "toys"}}), policy) ==
        "GET /p?category=toys");
  policy.keyQueryParams = std::vector<std::string>{};
  CHECK(*http::cacheKey(get("/p", {{"category", "toys"}}), policy) == "GET /p");
}

TEST_CASE("vary headers are part of the key, by lower-case name, absent differing from empty") {
  http::Policy policy;
  policy.varyHeaders = {"Accept-Language"};
  const auto en = http::cacheKey(get("/p", {}, {{"accept-language", "en"}}), policy);
  const auto fr = http::cacheKey(get("/p", {}, {{"ACCEPT-LANGUAGE", "fr"}}), policy);
  const auto none = http::cacheKey(get("/p"), policy);
  const auto empty = http::cacheKey(get("/p", {}, {{"Accept-Language", ""}}), policy);
  CHECK(*en == "GET /p|accept-language=en");
  CHECK(en != fr);
  CHECK(*none == "GET /p|accept-language");
  CHECK(none != empty);
  CHECK(*http::cacheKey(get("/p", {}, {{"Other", "1"}}), policy) == *none);
}

TEST_CASE("a request with Authorization or Cookie is not cached without an identity function") {
  const http::Policy policy;
  CHECK_FALSE(http::cacheKey(get("/p", {}, {{"Authorization", "Bearer alice"}}), policy));
  CHECK_FALSE(http::cacheKey(get("/p", {}, {{"authorization", ""}}), policy));
  CHECK_FALSE(http::cacheKey(get("/p", {}, {{"Cookie", "session=1"}}), policy));
  CHECK(http::cacheKey(get("/p", {}, {{"Accept", "*/*"}}), policy));
}

TEST_CASE("with an identity function, each caller has its own key and anonymous callers share "
          "theirs") {
  http::Policy policy;
  int calls = 0;
  policy.identity = [&](const http::Request& r) {
    ++calls;
    const auto auth = r.header("Authorization");
    return auth && auth->rfind("Bearer ", 0) == 0 ? "user:" + auth->substr(7) : std::string();
  };
  const auto alice = http::cacheKey(get("/p", {}, {{"Authorization", "Bearer alice"}}), policy);
  const auto bob = http::cacheKey(get("/p", {}, {{"Authorization", "Bearer bob"}}), policy);
  const auto anonymous = http::cacheKey(get("/p"), policy);
  REQUIRE(alice);
  REQUIRE(bob);
  CHECK(*alice == "GET /p|identity=user%3Aalice");
  CHECK(alice != bob);
  CHECK(alice != anonymous);
  CHECK(calls == 2); // not called for the anonymous request
  // A credential the function cannot name is not cached.
  CHECK_FALSE(http::cacheKey(get("/p", {}, {{"Cookie", "session=1"}}), policy));
}

TEST_CASE("the private headers are configurable") {
  http::Policy policy;
  policy.privateHeaders = {"X-Api-Key"};
  CHECK_FALSE(http::cacheKey(get("/p", {}, {{"x-api-key", "k"}}), policy));
  CHECK(http::cacheKey(get("/p", {}, {{"Authorization", "Bearer a"}}), policy));
}

TEST_CASE("ETags depend on body and content type, and are quoted") {
  const std::string a = http::etagOf("application/json", "[1]");
  CHECK(a.size() == 42);
  CHECK(a.front() == '"');
  CHECK(a.back() == '"');
  CHECK(a == http::etagOf("application/json", "[1]"));
  CHECK(a != http::etagOf("application/json", "[2]"));
  CHECK(a != http::etagOf("text/plain", "[1]"));
}

TEST_CASE("If-None-Match matches a listed tag, a weak tag, or *") {
  const std::string tag = "\"abc\"";
  CHECK(http::ifNoneMatchMatches("\"abc\"", tag));
  CHECK(http::ifNoneMatchMatches("W/\"abc\"", tag));
  CHECK(http::ifNoneMatchMatches("\"x\", \"abc\"", tag));
  CHECK(http::ifNoneMatchMatches(" \"x\" ,\t\"abc\" ", tag));
  CHECK(http::ifNoneMatchMatches("*", tag));
  CHECK_FALSE(http::ifNoneMatchMatches("\"abcd\"", tag));
  CHECK_FALSE(http::ifNoneMatchMatches("abc", tag));
  CHECK_FALSE(http::ifNoneMatchMatches("", tag));
  CHECK_FALSE(http::ifNoneMatchMatches("\"x\",", tag));
}

TEST_CASE("only statuses below 400 are cacheable, unless the policy lists them") {
  http::Policy policy;
  CHECK(policy.cacheableStatus(200));
  CHECK(policy.cacheableStatus(301));
  CHECK_FALSE(policy.cacheableStatus(304));
  CHECK_FALSE(policy.cacheableStatus(404));
  CHECK_FALSE(policy.cacheableStatus(503));
  policy.cacheErrorStatuses = {410};
  CHECK(policy.cacheableStatus(410));
  CHECK_FALSE(policy.cacheableStatus(404));
}

TEST_CASE("a stored response round-trips byte for byte, binary body included") {
  http::CachedResponse r;
  r.status = 203;
  r.contentType = "application/octet-stream";
  r.body = std::string("line1\nline2\0\xff\"}", 15);
  r.etag = "\"e\"";
  std::string bytes;
  cacheaside::Serializer<http::CachedResponse>::encode(r, bytes);
  CHECK(bytes.substr(bytes.size() - r.body.size()) == r.body);
  const http::CachedResponse back = cacheaside::Serializer<http::CachedResponse>::decode(bytes);
  CHECK(back.status == r.status);
  CHECK(back.contentType == r.contentType);
  CHECK(back.body == r.body);
  CHECK(back.etag == r.etag);
  CHECK_THROWS(cacheaside::Serializer<http::CachedResponse>::decode("no newline"));
  CHECK_THROWS(cacheaside::Serializer<http::CachedResponse>::decode("{\"status\":1}\nbody"));
}

TEST_CASE("to_json and from_json round-trip a response") {
  const http::CachedResponse r = response(201, "{\"id\":1}");
  const http::CachedResponse back = nlohmann::json(r).get<http::CachedResponse>();
  CHECK(back.status == 201);
  CHECK(back.body == r.body);
  CHECK(back.contentType == r.contentType);
}

TEST_CASE("serve: the first call runs the handler (MISS), the second is a HIT") {
  MapCache cache;
  const http::Policy policy;
  int runs = 0;
  const auto handler = [&] {
    ++runs;
    return response(200, "[" + std::to_string(runs) + "]");
  };
  const http::Served first = http::serve(cache, get("/p"), policy, handler);
  const http::Served second = http::serve(cache, get("/p"), policy, handler);
  CHECK(runs == 1);
  CHECK(first.cacheStatus == http::CacheStatus::Miss);
  CHECK(header(first, "X-Cache") == "MISS");
  CHECK(second.cacheStatus == http::CacheStatus::Hit);
  CHECK(header(second, "X-Cache") == "HIT");
  CHECK(second.response.body == "[1]");
  CHECK(header(second, "ETag") == http::etagOf("application/json", "[1]"));
  CHECK(cache.entries.count("GET /p") == 1);
}

TEST_CASE("serve: a matching If-None-Match gives 304 without a body, another tag gives 200") {
  MapCache cache;
  const http::Policy policy;
  const auto handler = [] { return response(200, "[1]"); };
  const std::string tag = http::etagOf("application/json", "[1]");
  const http::Served miss =
      http::serve(cache, get("/p", {}, {{"If-None-Match", tag}}), policy, handler);
  CHECK(miss.response.status == 304);
  CHECK(miss.response.body.empty());
  CHECK(header(miss, "ETag") == tag);
  const http::Served hit =
      http::serve(cache, get("/p", {}, {{"If-None-Match", tag}}), policy, handler);
  CHECK(hit.response.status == 304);
  CHECK(hit.cacheStatus == http::CacheStatus::Hit);
  const http::Served other =
      http::serve(cache, get("/p", {}, {{"If-None-Match", "\"other\""}}), policy, handler);
  CHECK(other.response.status == 200);
  CHECK(other.response.body == "[1]");
}

TEST_CASE("serve: error responses are not cached unless the policy asks") {
  MapCache cache;
  http::Policy policy;
  int runs = 0;
  const auto failing = [&] {
    ++runs;
    return response(503, "{}");
  };
  const http::Served a = http::serve(cache, get("/p"), policy, failing);
  const http::Served b = http::serve(cache, get("/p"), policy, failing);
  CHECK(runs == 2);
  CHECK(a.response.status == 503);
  CHECK(b.cacheStatus == http::CacheStatus::Bypass);
  CHECK(header(b, "ETag") == "(absent)");
  CHECK(cache.entries.empty());

  policy.cacheErrorStatuses = {503};
  http::serve(cache, get("/q"), policy, failing);
  const http::Served cached = http::serve(cache, get("/q"), policy, failing);
  CHECK(runs == 3);
  CHECK(cached.cacheStatus == http::CacheStatus::Hit);
  CHECK(cached.response.status == 503);
}

TEST_CASE("serve: with notFound, a 404 is cached as a negative entry and answered by notFound") {
  MapCache cache;
  http::Policy policy;
  policy.notFound = [](const http::Request& r) { return response(404, "missing " + r.path); };
  int runs = 0;
  const auto handler = [&] {
    ++runs;
    return response(404, "handler's body");
  };
  const http::Served miss = http::serve(cache, get("/p/7"), policy, handler);
  const http::Served hit = http::serve(cache, get("/p/7"), policy, handler);
  CHECK(runs == 1);
  CHECK(miss.response.status == 404);
  CHECK(miss.response.body == "missing /p/7");
  CHECK(miss.cacheStatus == http::CacheStatus::Miss);
  CHECK(hit.response.status == 404);
  CHECK(hit.cacheStatus == http::CacheStatus::Hit);
  REQUIRE(cache.entries.count("GET /p/7") == 1);
  CHECK_FALSE(cache.entries["GET /p/7"].has_value());
}

TEST_CASE("serve: without notFound, a 404 is not cached") {
  MapCache cache;
  const http::Policy policy;
  int runs = 0;
  const auto handler = [&] {
    ++runs;
    return response(404, "{}");
  };
  http::serve(cache, get("/p/7"), policy, handler);
  http::serve(cache, get("/p/7"), policy, handler);
  CHECK(runs == 2);
  CHECK(cache.entries.empty());
}

TEST_CASE("serve: requests with credentials bypass the cache and never see a cached response") {
  MapCache cache;
  const http::Policy policy;
  int runs = 0;
  const auto handler = [&] {
    ++runs;
    return response(200, std::to_string(runs));
  };
  http::serve(cache, get("/p"), policy, handler); // cached for anonymous callers: "1"
  const http::Served alice =
      http::serve(cache, get("/p", {}, {{"Authorization", "Bearer alice"}}), policy, handler);
  const http::Served bob =
      http::serve(cache, get("/p", {}, {{"Cookie", "s=bob"}}), policy, handler);
  CHECK(alice.cacheStatus == http::CacheStatus::Bypass);
  CHECK(alice.response.body == "2");
  CHECK(bob.response.body == "3");
  CHECK(header(bob, "X-Cache") == "BYPASS");
  CHECK(cache.entries.size() == 1);
}

TEST_CASE("serve: handler exceptions propagate and nothing is cached") {
  MapCache cache;
  const http::Policy policy;
  CHECK_THROWS_AS(http::serve(cache, get("/p"), policy,
                              []() -> http::CachedResponse { throw std::logic_error("boom"); }),
                  std::logic_error);
  CHECK(cache.entries.empty());
}

TEST_CASE("serve: vary headers produce a Vary header and separate entries") {
  MapCache cache;
  http::Policy policy;
  policy.varyHeaders = {"Accept-Language", "Accept"};
  const http::Served en = http::serve(cache, get("/p", {}, {{"Accept-Language", "en"}}), policy,
                                      [] { return response(200, "hello"); });
  const http::Served fr = http::serve(cache, get("/p", {}, {{"Accept-Language", "fr"}}), policy,
                                      [] { return response(200, "bonjour"); });
  CHECK(header(en, "Vary") == "Accept-Language, Accept");
  CHECK(en.response.body == "hello");
  CHECK(fr.response.body == "bonjour");
  CHECK(fr.cacheStatus == http::CacheStatus::Miss);
}

TEST_CASE("X-Cache values") {
  CHECK(std::string(http::xCacheValue(http::CacheStatus::Hit)) == "HIT");
  CHECK(std::string(http::xCacheValue(http::CacheStatus::Miss)) == "MISS");
  CHECK(std::string(http::xCacheValue(http::CacheStatus::Stale)) == "STALE");
  CHECK(std::string(http::xCacheValue(http::CacheStatus::Bypass)) == "BYPASS");
}

TEST_CASE("prometheusText writes every counter of the list, with HELP, TYPE and the label") {
  cacheaside::Stats s;
  s.hits = 3;
  s.redisErrors = 7;
  const std::string text = http::prometheusText(s, "a\"b");
  CHECK(text.find("# TYPE cacheaside_hits_total counter\n") != std::string::npos);
  CHECK(text.find("\ncacheaside_hits_total{cache=\"a\\\"b\"} 3\n") != std::string::npos);
  CHECK(text.find("\ncacheaside_redis_errors_total{cache=\"a\\\"b\"} 7\n") != std::string::npos);
  CHECK(text.find("\ncacheaside_misses_total{cache=\"a\\\"b\"} 0\n") != std::string::npos);
  std::size_t samples = 0;
  std::size_t pos = 0;
  while ((pos = text.find("\ncacheaside_", pos)) != std::string::npos) {
    ++samples;
    ++pos;
  }
  CHECK(samples == cacheaside::counterList().size());
  for (const auto& counter : cacheaside::counterList()) {
    CAPTURE(counter.name);
    CHECK(text.find("\n" + cacheaside::metrics::metricName(counter.name) + "{") !=
          std::string::npos);
  }
  CHECK(text.back() == '\n');
}
