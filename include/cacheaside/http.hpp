#pragma once
/// \file http.hpp
/// Response caching for HTTP services, independent of any HTTP framework: a cached-response
/// type, a key builder that normalizes requests, ETags with If-None-Match, the X-Cache header,
/// and serve(), which puts a CacheAside<CachedResponse> in front of a handler.
///
/// The rules serve() applies:
///   - only GET and HEAD are cached (HEAD shares GET's entry);
///   - a request that carries a private header (Authorization, Cookie) is not cached unless
///     Policy::identity names the caller, and then the key includes that identity, so that no
///     caller is ever served another caller's private response;
///   - responses with status 400 and above are not cached, except the statuses a Policy asks for
///     (404 may be cached as a negative entry, for CacheOptions::negativeTtl);
///   - a response to a request that carries a private header is sent with
///     `Cache-Control: private` and a Vary naming the private headers (and the policy's vary
///     headers), whether it was keyed per caller or not cached, so that no shared cache (a proxy,
///     a CDN) stores it and hands it to someone else;
///   - a response's Location (201 Created, 3xx) is stored with it and sent on every hit;
///   - a 2xx response to a GET or HEAD whose ETag matches If-None-Match becomes 304 Not Modified
///     (other methods have run their handler already and get its response).
///
/// An adapter for a framework converts its request into http::Request, calls serve(), and copies
/// Served::response and Served::headers into its response.

#include <cacheaside/detail/sha1.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/metrics/prometheus.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/serializer.hpp>
#include <cacheaside/stats.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cacheaside::http {

/// Name/value pairs in request order: query parameters (decoded) or headers.
using Params = std::vector<std::pair<std::string, std::string>>;

/// ASCII case-insensitive equality, as HTTP header names compare.
inline bool equalsIgnoreCase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) {
      return false;
    }
  }
  return true;
}

/// A request as the cache sees it. Fill it from the framework's request object.
struct Request {
  /// The method, upper case ("GET"). Default "GET".
  std::string method = "GET";
  /// The path, without the query string (decoded or not, as long as it is done consistently).
  std::string path = "/";
  /// The query parameters, decoded, in request order.
  Params query;
  /// The request headers, in any order; names compare case-insensitively.
  Params headers;

  /// The value of the first header called name (case-insensitive), or std::nullopt.
  std::optional<std::string> header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (equalsIgnoreCase(n, name)) {
        return v;
      }
    }
    return std::nullopt;
  }
};

/// A response as stored in Redis by CacheAside<CachedResponse> (see ResponseSerializer); also
/// convertible to and from JSON.
struct CachedResponse {
  /// The HTTP status. Default 200.
  int status = 200;
  /// The Content-Type. Default "application/json".
  std::string contentType = "application/json";
  /// The body, any bytes.
  std::string body;
  /// The strong entity tag, quotes included (see etagOf); serve() fills it when empty.
  std::string etag;
  /// The Location header (a 201's new resource, a redirect's target); empty for none.
  std::string location;
};

/// Writes r as a JSON object {status, contentType, body, etag[, location]} (the body must be
/// UTF-8 text).
inline void to_json(nlohmann::json& j, const CachedResponse& r) {
  j = nlohmann::json{
      {"status", r.status}, {"contentType", r.contentType}, {"body", r.body}, {"etag", r.etag}};
  if (!r.location.empty()) {
    j["location"] = r.location;
  }
}

/// Reads r from the JSON object to_json writes; throws nlohmann::json::exception otherwise.
inline void from_json(const nlohmann::json& j, CachedResponse& r) {
  j.at("status").get_to(r.status);
  j.at("contentType").get_to(r.contentType);
  j.at("body").get_to(r.body);
  j.at("etag").get_to(r.etag);
  r.location = j.value("location", std::string());
}

/// How CacheAside<CachedResponse> stores a response: one line of JSON with status, content type,
/// ETag and Location (when there is one), a newline, then the body byte for byte (any bytes; no
/// escaping, so `redis-cli GET` shows the body as sent).
struct ResponseSerializer {
  /// Appends the record of r to out.
  static void encode(const CachedResponse& r, std::string& out) {
    nlohmann::json head{{"status", r.status}, {"contentType", r.contentType}, {"etag", r.etag}};
    if (!r.location.empty()) {
      head["location"] = r.location;
    }
    out += head.dump();
    out += '\n'; // dump() escapes control characters, so the first newline ends the head
    out += r.body;
  }
  /// Reads a record encode wrote; throws std::runtime_error or nlohmann::json::exception on
  /// anything else.
  static CachedResponse decode(std::string_view bytes) {
    const std::size_t newline = bytes.find('\n');
    if (newline == std::string_view::npos) {
      throw std::runtime_error("cacheaside::http: not a cached response");
    }
    const auto head = nlohmann::json::parse(bytes.begin(), bytes.begin() + newline);
    CachedResponse r;
    head.at("status").get_to(r.status);
    head.at("contentType").get_to(r.contentType);
    head.at("etag").get_to(r.etag);
    r.location = head.value("location", std::string());
    r.body.assign(bytes.substr(newline + 1));
    return r;
  }
};

/// Where a response came from, as told by the X-Cache header.
enum class CacheStatus {
  Hit,    ///< from the cache (or a concurrent call's load): this call did not run the handler
  Miss,   ///< the handler ran in this call (the cache was empty, or Redis was unavailable)
  Stale,  ///< an expired value served while another caller refreshes it (when the cache does so)
  Bypass, ///< the request or response is not cacheable; the handler ran
};

/// The X-Cache header value: "HIT", "MISS", "STALE" or "BYPASS".
inline const char* xCacheValue(CacheStatus s) noexcept {
  switch (s) {
  case CacheStatus::Hit:
    return "HIT";
  case CacheStatus::Miss:
    return "MISS";
  case CacheStatus::Stale:
    return "STALE";
  case CacheStatus::Bypass:
    break;
  }
  return "BYPASS";
}

/// What is cached, and under which key.
struct Policy {
  /// Request headers that select a different response (e.g. "Accept-Language"); each becomes
  /// part of the key and of the Vary header. Default none.
  std::vector<std::string> varyHeaders;
  /// When set, only these query parameters are part of the key (the handler must ignore the
  /// others); by default every parameter is.
  std::optional<std::vector<std::string>> keyQueryParams;
  /// Headers that make a response private to its caller. Default Authorization and Cookie.
  std::vector<std::string> privateHeaders{"Authorization", "Cookie"};
  /// Names the caller of a request that carries a private header (for example the user id a
  /// verified token belongs to). Empty function, or an empty result: such requests are not
  /// cached. A non-empty result becomes part of the key. Never called for other requests.
  std::function<std::string(const Request&)> identity;
  /// When set, a 404 from the handler is cached as a negative entry (CacheOptions::negativeTtl)
  /// and every 404 for the key, miss or hit, is the response this function builds.
  std::function<CachedResponse(const Request&)> notFound;
  /// Statuses of 400 and above that are cached like successes. Default none.
  std::vector<int> cacheErrorStatuses;

  /// Whether a response with this status may be stored (other than a negative 404).
  bool cacheableStatus(int status) const {
    if (status >= 200 && status < 400 && status != 304) {
      return true;
    }
    return std::find(cacheErrorStatuses.begin(), cacheErrorStatuses.end(), status) !=
           cacheErrorStatuses.end();
  }
};

/// Percent-encodes every byte except unreserved ones (RFC 3986) and, if keepSlash, '/'.
inline std::string percentEncode(std::string_view s, bool keepSlash = false) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved || (keepSlash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

/// Whether the request carries one of the policy's private headers.
inline bool hasPrivateHeader(const Request& request, const Policy& policy) {
  for (const auto& name : policy.privateHeaders) {
    if (request.header(name)) {
      return true;
    }
  }
  return false;
}

/// The cache key of a request, or std::nullopt when it must not be cached (not GET or HEAD, or
/// a private header without an identity). The key is readable and unambiguous:
///   GET /path?a=1&b=2|accept-language=en|identity=u42
/// Path, parameters and values are percent-encoded; parameters are sorted by name (stably, so
/// repeated names keep their order); vary header names are lower-cased, an absent header has no
/// '='. HEAD uses GET's key.
inline std::optional<std::string> cacheKey(const Request& request, const Policy& policy) {
  if (request.method != "GET" && request.method != "HEAD") {
    return std::nullopt;
  }
  std::string identity;
  if (hasPrivateHeader(request, policy)) {
    if (!policy.identity) {
      return std::nullopt;
    }
    identity = policy.identity(request);
    if (identity.empty()) {
      return std::nullopt;
    }
  }
  Params query;
  for (const auto& param : request.query) {
    if (!policy.keyQueryParams ||
        std::find(policy.keyQueryParams->begin(), policy.keyQueryParams->end(), param.first) !=
            policy.keyQueryParams->end()) {
      query.push_back(param);
    }
  }
  std::stable_sort(query.begin(), query.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string key = "GET " + percentEncode(request.path, true);
  for (std::size_t i = 0; i < query.size(); ++i) {
    key += i == 0 ? '?' : '&';
    key += percentEncode(query[i].first) + '=' + percentEncode(query[i].second);
  }
  for (const auto& name : policy.varyHeaders) {
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; });
    key += '|' + percentEncode(lower);
    if (const auto value = request.header(name)) {
      key += '=' + percentEncode(*value);
    }
  }
  if (!identity.empty()) {
    key += "|identity=" + percentEncode(identity);
  }
  return key;
}

/// A strong entity tag for a representation: a quoted 160-bit SHA-1 of content type and body.
inline std::string etagOf(std::string_view contentType, std::string_view body) {
  std::string data(contentType);
  data.push_back('\n');
  data.append(body);
  return '"' + cacheaside::detail::sha1Hex(data) + '"';
}

/// Whether an If-None-Match header value matches etag (weak comparison, RFC 9110 13.1.2):
/// "*", or any listed entity tag equal to etag once "W/" prefixes are ignored.
inline bool ifNoneMatchMatches(std::string_view ifNoneMatch, std::string_view etag) {
  const auto opaque = [](std::string_view tag) {
    if (tag.size() >= 2 && (tag[0] == 'W' || tag[0] == 'w') && tag[1] == '/') {
      tag.remove_prefix(2);
    }
    return tag;
  };
  const std::string_view mine = opaque(etag);
  std::size_t pos = 0;
  while (pos < ifNoneMatch.size()) {
    std::size_t end = ifNoneMatch.find(',', pos);
    if (end == std::string_view::npos) {
      end = ifNoneMatch.size();
    }
    std::string_view tag = ifNoneMatch.substr(pos, end - pos);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) {
      tag.remove_prefix(1);
    }
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) {
      tag.remove_suffix(1);
    }
    if (tag == "*" || (!tag.empty() && !mine.empty() && opaque(tag) == mine)) {
      return true;
    }
    pos = end + 1;
  }
  return false;
}

/// What serve() answers: the response to send and the headers to add to it.
struct Served {
  /// The response; status 304 with an empty body when the request's If-None-Match matched.
  CachedResponse response;
  /// Where it came from (the X-Cache header).
  CacheStatus cacheStatus = CacheStatus::Bypass;
  /// Headers to set besides Content-Type: ETag (2xx and 304), X-Cache, Location when the
  /// response has one, Vary when the policy has vary headers or the request a private header,
  /// and Cache-Control: private in the latter case.
  Params headers;
};

namespace detail {

// Carries a response the policy does not store out of the loader: loader exceptions are never
// cached, and the lease is released.
struct Uncacheable : std::exception {
  explicit Uncacheable(CachedResponse r) : response(std::move(r)) {}
  const char* what() const noexcept override { return "cacheaside::http: uncacheable response"; }
  CachedResponse response;
};

inline Served finish(const Request& request, const Policy& policy, CachedResponse response,
                     CacheStatus status) {
  if (response.etag.empty()) {
    response.etag = etagOf(response.contentType, response.body);
  }
  Served served;
  served.cacheStatus = status;
  const bool success = response.status >= 200 && response.status < 300;
  if (success) {
    served.headers.emplace_back("ETag", response.etag);
  }
  served.headers.emplace_back("X-Cache", xCacheValue(status));
  if (!response.location.empty()) {
    served.headers.emplace_back("Location", response.location);
  }
  // A response chosen by (or meant for) the caller's credentials: shared caches must not store
  // it, and private ones must key it on those headers.
  const bool perCaller = hasPrivateHeader(request, policy);
  std::vector<std::string> varyNames = policy.varyHeaders;
  if (perCaller) {
    varyNames.insert(varyNames.end(), policy.privateHeaders.begin(), policy.privateHeaders.end());
  }
  if (!varyNames.empty()) {
    std::string vary;
    for (const auto& name : varyNames) {
      vary += (vary.empty() ? "" : ", ") + name;
    }
    served.headers.emplace_back("Vary", vary);
  }
  if (perCaller) {
    served.headers.emplace_back("Cache-Control", "private");
  }
  // RFC 9110 13.1.2: 304 answers only GET and HEAD; any other method has already run.
  const bool safe = request.method == "GET" || request.method == "HEAD";
  const auto ifNoneMatch = request.header("If-None-Match");
  if (safe && success && ifNoneMatch && ifNoneMatchMatches(*ifNoneMatch, response.etag)) {
    response.status = 304;
    response.body.clear();
  }
  served.response = std::move(response);
  return served;
}

} // namespace detail

/// Answers request from cache (a CacheAside<CachedResponse>, or anything with its getOrLoad)
/// or by calling handler(), a callable returning CachedResponse, and storing what it returns as
/// policy allows. The handler runs at most once per call; its exceptions propagate unchanged
/// and are never cached. Redis failures do not reach the caller (the handler answers, X-Cache
/// MISS); what cache.getOrLoad throws does (LockTimeoutError under WaitTimeoutPolicy::Throw). A
/// stale response (served while another caller refreshes it, or after its refresh failed) is
/// labelled STALE. call is passed to getOrLoad (e.g. the response's tags).
template <typename Cache, typename Handler>
Served serve(Cache& cache, const Request& request, const Policy& policy, Handler&& handler,
             const CallOptions& call = {}) {
  const std::optional<std::string> key = cacheKey(request, policy);
  if (!key) {
    return detail::finish(request, policy, handler(), CacheStatus::Bypass);
  }
  bool ran = false;
  Outcome outcome = Outcome::Hit;
  std::optional<CachedResponse> result;
  try {
    result = cache.getOrLoad(
        *key,
        [&]() -> std::optional<CachedResponse> {
          ran = true;
          CachedResponse response = handler();
          if (response.status == 404 && policy.notFound) {
            return std::nullopt;
          }
          if (!policy.cacheableStatus(response.status)) {
            throw detail::Uncacheable(std::move(response));
          }
          if (response.etag.empty()) {
            response.etag = etagOf(response.contentType, response.body);
          }
          return response;
        },
        call, &outcome);
  } catch (const detail::Uncacheable& e) {
    return detail::finish(request, policy, e.response, CacheStatus::Bypass);
  }
  const CacheStatus status = outcome == Outcome::Stale ? CacheStatus::Stale
                             : ran                     ? CacheStatus::Miss
                                                       : CacheStatus::Hit;
  if (!result) {
    if (!policy.notFound) { // a negative entry written by another policy for this key
      CachedResponse gone;
      gone.status = 404;
      gone.body = R"({"error":"not found"})";
      return detail::finish(request, policy, std::move(gone), status);
    }
    return detail::finish(request, policy, policy.notFound(request), status);
  }
  return detail::finish(request, policy, std::move(*result), status);
}

/// The content type of prometheusText() (metrics/prometheus.hpp).
using metrics::kPrometheusContentType;
/// Every counter of a cache in the Prometheus text format (metrics/prometheus.hpp).
using metrics::prometheusText;

} // namespace cacheaside::http

namespace cacheaside {

/// CacheAside<http::CachedResponse> stores responses with http::ResponseSerializer.
template <> struct Serializer<http::CachedResponse> : http::ResponseSerializer {};

} // namespace cacheaside
