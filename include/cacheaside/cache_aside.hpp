#pragma once
/// \file cache_aside.hpp
/// CacheAside<T>: get-or-load through Redis with a lease per key, so that one caller loads a
/// missing value while the others wait for it, and a load that overlapped an invalidation never
/// writes its (possibly stale) value back.

#include <cacheaside/client.hpp>
#include <cacheaside/detail/keys.hpp>
#include <cacheaside/detail/random.hpp>
#include <cacheaside/detail/scripts.hpp>
#include <cacheaside/detail/sha1.hpp>
#include <cacheaside/detail/single_flight.hpp>
#include <cacheaside/envelope.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/serializer.hpp>
#include <cacheaside/stats.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

namespace cacheaside {

namespace detail {
template <typename T> struct IsOptional : std::false_type {};
template <typename T> struct IsOptional<std::optional<T>> : std::true_type {};

template <typename T, typename Loader>
using LoadResult =
    std::conditional_t<IsOptional<std::decay_t<std::invoke_result_t<Loader&>>>::value,
                       std::optional<T>, T>;
} // namespace detail

/// A cache-aside view of Redis for values of type T.
///
/// Thread-safe: share one instance between threads. The client is borrowed, not owned: it must
/// outlive the cache. Each instance coalesces concurrent calls for a key within itself; across
/// instances and processes the Redis lease makes sure one caller loads.
///
/// \tparam T the cached type; copyable.
/// \tparam S the serializer (see serializer.hpp); JSON by default, raw bytes for std::string.
template <typename T, typename S = Serializer<T>> class CacheAside {
public:
  /// The cached type.
  using value_type = T;
  /// The serializer.
  using serializer_type = S;

  /// Builds a cache over client (borrowed; it must outlive the cache). Throws
  /// std::invalid_argument when options.validate() does.
  explicit CacheAside(RedisClient& client, CacheOptions options = {})
      : client_(client), options_((options.validate(), std::move(options))),
        lockTtlArg_(std::to_string(options_.lockTtl.count())) {}

  CacheAside(const CacheAside&) = delete;
  CacheAside& operator=(const CacheAside&) = delete;

  /// Returns the value cached for key, or calls loader, caches what it returns and returns it.
  ///
  /// The loader is any callable returning T (then this returns T), or std::optional<T> (then
  /// this returns std::optional<T>, and an empty result is cached for negativeTtl as "not
  /// found"). Among concurrent callers of a key, in this process and every other one that shares
  /// the Redis, one calls its loader; the others wait for its value (see CacheOptions::waitBudget).
  /// A value loaded while the key was invalidated is returned but not written back.
  ///
  /// Redis failures never reach the caller: the loader's value is returned uncached and the
  /// failure is counted. Throws std::invalid_argument for an empty key, whatever the loader
  /// throws (never cached, shared with the callers coalesced onto this call), LockTimeoutError
  /// under WaitTimeoutPolicy::Throw, and EntryError when a T loader meets a cached "not found".
  template <typename Loader>
  detail::LoadResult<T, Loader> getOrLoad(std::string_view key, Loader&& loader,
                                          const CallOptions& call = {}) {
    using Loaded = std::decay_t<std::invoke_result_t<Loader&>>;
    constexpr bool kMaybe = detail::IsOptional<Loaded>::value;
    static_assert(kMaybe ? std::is_same_v<Loaded, std::optional<T>>
                         : std::is_convertible_v<Loaded, T>,
                  "cacheaside: the loader must return T or std::optional<T>");
    const Effective eff = resolve(call);
    const std::string rk = detail::redisKey(options_.keyNamespace, key);
    auto load = [&loader]() -> std::optional<T> {
      if constexpr (kMaybe) {
        return std::invoke(loader);
      } else {
        return std::optional<T>(std::invoke(loader));
      }
    };
    std::optional<T> result = flights_.run(
        rk, [&] { return fetch(key, rk, load, eff); },
        [this] { Counters::bump(counters_.coalesced); });
    if constexpr (kMaybe) {
      return result;
    } else {
      if (!result) {
        throw EntryError("cacheaside: key '" + detail::printableKey(key) +
                         "' holds a cached \"not found\"; read it with a loader returning "
                         "std::optional<T>");
      }
      return std::move(*result);
    }
  }

  /// The cached value for key, without loading: std::nullopt when there is none, when it is
  /// being loaded, when it is a cached "not found", when it cannot be decoded, and when Redis
  /// fails (counted in stats()). Throws std::invalid_argument for an empty key.
  std::optional<T> get(std::string_view key) {
    const std::string rk = detail::redisKey(options_.keyNamespace, key);
    try {
      const Reply reply = client_.command({"GET", rk});
      if (reply.isError()) {
        Counters::bump(counters_.redisErrors);
        return std::nullopt;
      }
      if (reply.type != Reply::Type::String) {
        return std::nullopt;
      }
      const auto env = envelope::decode(reply.str);
      if (!env) {
        Counters::bump(counters_.decodeFailures);
        return std::nullopt;
      }
      if (env->kind != EntryKind::Value) {
        return std::nullopt;
      }
      return decodeValue(*env);
    } catch (const ConnectionError&) {
      Counters::bump(counters_.redisErrors);
      return std::nullopt;
    }
  }

  /// Writes value for key with ttl (default: the cache's, with jitter), to warm the cache.
  /// Not fenced: it overwrites whatever the key holds, and a load in flight for the key will then
  /// not write back. Returns false, and counts why, when the value is larger than maxValueBytes
  /// or Redis fails. Throws std::invalid_argument for an empty key or a non-positive ttl, and
  /// Error when the serializer cannot encode the value.
  bool set(std::string_view key, const T& value,
           std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    const std::string rk = detail::redisKey(options_.keyNamespace, key);
    if (ttl && ttl->count() <= 0) {
      throw std::invalid_argument("cacheaside: set() needs a positive ttl");
    }
    std::string record;
    try {
      encodeValue(value, 0, record);
    } catch (const std::exception& e) {
      Counters::bump(counters_.encodeFailures);
      throw Error("cacheaside: cannot serialize the value for key '" + detail::printableKey(key) +
                  "': " + e.what());
    }
    if (record.size() - envelope::kHeaderSize > options_.maxValueBytes) {
      Counters::bump(counters_.oversizedValues);
      return false;
    }
    const std::string px = std::to_string((ttl ? *ttl : jittered(options_.ttl)).count());
    try {
      const Reply reply = client_.command({"SET", rk, record, "PX", px});
      if (reply.isError()) {
        Counters::bump(counters_.redisErrors);
        return false;
      }
      return true;
    } catch (const ConnectionError&) {
      Counters::bump(counters_.redisErrors);
      return false;
    }
  }

  /// Deletes the value cached for key and any lease on it, so that a load in flight does not
  /// write back. Call it after the write to the source of truth has committed. Throws
  /// std::invalid_argument for an empty key, and ConnectionError or ReplyError when Redis fails:
  /// then the old value may be served until its TTL ends.
  void invalidate(std::string_view key) {
    const std::string rk = detail::redisKey(options_.keyNamespace, key);
    const Reply reply = countingFailures([&] { return client_.command({"DEL", rk}); });
    if (reply.isError()) {
      Counters::bump(counters_.redisErrors);
      throw ReplyError("cacheaside: invalidate('" + detail::printableKey(key) +
                       "') failed: " + reply.str);
    }
  }

  /// Invalidates several keys in one round trip (one DEL each, so that keys in different
  /// Redis Cluster slots are fine). Throws as invalidate(key) does.
  void invalidate(std::initializer_list<std::string_view> keys) { invalidateRange(keys); }

  /// Invalidates every key of a range of strings or string views, in one round trip.
  template <typename Range,
            typename = std::enable_if_t<!std::is_convertible_v<const Range&, std::string_view>>>
  void invalidate(const Range& keys) {
    invalidateRange(keys);
  }

  /// The counters so far; safe to call from any thread at any time.
  Stats stats() const noexcept { return counters_.snapshot(); }

  /// The options the cache was built with.
  const CacheOptions& options() const noexcept { return options_; }

  /// How many keys have a getOrLoad in flight in this instance now (0 when idle).
  std::size_t inFlight() const { return flights_.inFlight(); }

private:
  using Counters = detail::AtomicStats;
  using Clock = std::chrono::steady_clock;

  struct Effective {
    std::chrono::milliseconds ttl;
    std::chrono::milliseconds negativeTtl;
    std::chrono::milliseconds waitBudget;
    WaitTimeoutPolicy onWaitTimeout;
  };

  // What the look at Redis decided.
  enum class Next { Hit, Load, LoadUncached };

  Effective resolve(const CallOptions& call) const {
    const Effective eff{call.ttl.value_or(options_.ttl),
                        call.negativeTtl.value_or(options_.negativeTtl),
                        call.waitBudget.value_or(options_.waitBudget),
                        call.onWaitTimeout.value_or(options_.onWaitTimeout)};
    if (eff.ttl.count() <= 0 || eff.negativeTtl.count() <= 0 || eff.waitBudget.count() < 0) {
      throw std::invalid_argument("cacheaside: CallOptions durations must be positive");
    }
    return eff;
  }

  template <typename Load>
  std::optional<T> fetch(std::string_view key, const std::string& rk, Load& load,
                         const Effective& eff) {
    const std::string lease = makeLease();
    std::optional<T> found;
    switch (lookup(key, rk, lease, eff, found)) {
    case Next::Hit:
      return found;
    case Next::Load:
      return loadAndFill(rk, lease, load, eff);
    case Next::LoadUncached:
      break;
    }
    Counters::bump(counters_.loads);
    return load();
  }

  // One SET NX PX GET reads the value and, when there is none, takes the lease. A caller that
  // finds someone else's lease polls with growing pauses until the value appears, the lease
  // goes (then the same command takes it), or the wait budget runs out.
  Next lookup(std::string_view key, const std::string& rk, const std::string& lease,
              const Effective& eff, std::optional<T>& found) {
    const Argv acquire{"SET", rk, lease, "NX", "PX", lockTtlArg_, "GET"};
    const auto deadline = Clock::now() + eff.waitBudget;
    auto pause = options_.pollInitial;
    bool first = true;
    bool waited = false;
    try {
      Reply reply = client_.command(acquire);
      for (;; first = false) {
        if (reply.isError() || (!reply.isNil() && reply.type != Reply::Type::String)) {
          Counters::bump(counters_.redisErrors);
          countMiss(first);
          return Next::LoadUncached;
        }
        if (reply.isNil()) {
          countMiss(first);
          return Next::Load;
        }
        const auto env = envelope::decode(reply.str);
        if (env && env->kind == EntryKind::Lease) {
          countMiss(first);
          if (!waited) {
            Counters::bump(counters_.leaseWaits);
            waited = true;
          }
          if (Clock::now() + pause > deadline) {
            Counters::bump(counters_.waitTimeouts);
            if (eff.onWaitTimeout == WaitTimeoutPolicy::Throw) {
              throw LockTimeoutError(
                  "cacheaside: gave up after " + std::to_string(eff.waitBudget.count()) +
                  " ms waiting for another caller to load key '" + detail::printableKey(key) + "'");
            }
            return Next::LoadUncached;
          }
          std::this_thread::sleep_for(pause);
          pause = std::min(pause * 2, options_.pollMax);
          reply = client_.command(acquire);
          continue;
        }
        if (env) {
          if (env->kind == EntryKind::Negative) {
            found.reset();
            countHit(first);
            return Next::Hit;
          }
          found = decodeValue(*env);
          if (found) {
            countHit(first);
            return Next::Hit;
          }
        } else {
          Counters::bump(counters_.decodeFailures);
        }
        // Undecodable: take the lease over these exact bytes, so the fill replaces them.
        countMiss(first);
        reply = evalScript(client_, detail::takeoverScript(), {rk},
                           {detail::sha1Hex(reply.str), lease, lockTtlArg_});
      }
    } catch (const ConnectionError&) {
      Counters::bump(counters_.redisErrors);
      countMiss(first);
      return Next::LoadUncached;
    }
  }

  template <typename Load>
  std::optional<T> loadAndFill(const std::string& rk, const std::string& lease, Load& load,
                               const Effective& eff) {
    const auto started = Clock::now();
    std::optional<T> value;
    Counters::bump(counters_.loads);
    try {
      value = load();
    } catch (...) {
      release(rk, lease);
      throw;
    }
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    const auto loadMillis = static_cast<std::uint32_t>(
        std::min<std::chrono::milliseconds::rep>(took.count(), UINT32_MAX));
    std::string record;
    if (value) {
      try {
        encodeValue(*value, loadMillis, record);
      } catch (const std::exception&) {
        Counters::bump(counters_.encodeFailures);
        release(rk, lease);
        return value;
      }
      if (record.size() - envelope::kHeaderSize > options_.maxValueBytes) {
        Counters::bump(counters_.oversizedValues);
        release(rk, lease);
        return value;
      }
    } else {
      envelope::appendHeader(record, EntryKind::Negative, loadMillis);
    }
    const std::string px = std::to_string(jittered(value ? eff.ttl : eff.negativeTtl).count());
    try {
      const Reply reply = evalScript(client_, detail::fillScript(), {rk}, {lease, record, px});
      if (reply.isError()) {
        Counters::bump(counters_.redisErrors);
      } else if (reply.integer == 0) {
        Counters::bump(counters_.fencedWrites);
      }
    } catch (const ConnectionError&) {
      Counters::bump(counters_.redisErrors);
    }
    return value;
  }

  // Best effort: a lease that cannot be released expires after lockTtl.
  void release(const std::string& rk, const std::string& lease) noexcept {
    try {
      if (evalScript(client_, detail::releaseScript(), {rk}, {lease}).isError()) {
        Counters::bump(counters_.redisErrors);
      }
    } catch (...) {
      Counters::bump(counters_.redisErrors);
    }
  }

  template <typename Range> void invalidateRange(const Range& keys) {
    std::vector<std::string> rks;
    for (const auto& key : keys) {
      rks.push_back(detail::redisKey(options_.keyNamespace, std::string_view(key)));
    }
    if (rks.empty()) {
      return;
    }
    std::vector<Argv> commands;
    commands.reserve(rks.size());
    for (const auto& rk : rks) {
      commands.push_back({"DEL", rk});
    }
    const std::vector<Reply> replies = countingFailures([&] { return client_.pipeline(commands); });
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].isError()) {
        Counters::bump(counters_.redisErrors);
        throw ReplyError("cacheaside: invalidate of '" + detail::printableKey(rks[i]) +
                         "' failed: " + replies[i].str);
      }
    }
  }

  // Runs a Redis call whose failure the caller must see, counting it first.
  template <typename Call> auto countingFailures(Call&& call) {
    try {
      return call();
    } catch (const ConnectionError&) {
      Counters::bump(counters_.redisErrors);
      throw;
    }
  }

  std::optional<T> decodeValue(const Envelope& env) {
    try {
      return S::decode(env.payload);
    } catch (const std::exception&) {
      Counters::bump(counters_.decodeFailures);
      return std::nullopt;
    }
  }

  static void encodeValue(const T& value, std::uint32_t loadMillis, std::string& record) {
    envelope::appendHeader(record, EntryKind::Value, loadMillis);
    S::encode(value, record);
  }

  // A lease record with a fresh 128-bit random token.
  static std::string makeLease() {
    std::string lease;
    lease.reserve(envelope::kHeaderSize + 16);
    envelope::appendHeader(lease, EntryKind::Lease, 0);
    auto& random = detail::ThreadRandom::local();
    for (int word = 0; word < 2; ++word) {
      const std::uint64_t bits = random.next();
      for (int i = 0; i < 8; ++i) {
        lease.push_back(static_cast<char>((bits >> (8 * i)) & 0xFF));
      }
    }
    return lease;
  }

  std::chrono::milliseconds jittered(std::chrono::milliseconds ttl) const {
    if (options_.ttlJitter == 0.0) {
      return ttl;
    }
    const double u = detail::ThreadRandom::local().unitOpenClosed();
    const double factor = 1.0 + options_.ttlJitter * (2.0 * u - 1.0);
    const auto ms = static_cast<std::chrono::milliseconds::rep>(
        std::llround(static_cast<double>(ttl.count()) * factor));
    return std::chrono::milliseconds(std::max<std::chrono::milliseconds::rep>(ms, 1));
  }

  void countHit(bool first) noexcept {
    if (first) {
      Counters::bump(counters_.hits);
    }
  }

  void countMiss(bool first) noexcept {
    if (first) {
      Counters::bump(counters_.misses);
    }
  }

  RedisClient& client_;
  const CacheOptions options_;
  const std::string lockTtlArg_;
  detail::SingleFlight<std::optional<T>> flights_;
  Counters counters_;
};

} // namespace cacheaside
