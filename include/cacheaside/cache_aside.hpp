#pragma once
/// \file cache_aside.hpp
/// CacheAside<T>: get-or-load through Redis with a lease per key, so that one caller loads a
/// missing value while the others wait for it, and a load that overlapped an invalidation never
/// writes its (possibly stale) value back. Optionally serves stale values while one caller
/// refreshes them, refreshes hot values early (XFetch), and bypasses a failing Redis.

#include <cacheaside/client.hpp>
#include <cacheaside/detail/circuit_breaker.hpp>
#include <cacheaside/detail/keys.hpp>
#include <cacheaside/detail/lease_renewer.hpp>
#include <cacheaside/detail/random.hpp>
#include <cacheaside/detail/scripts.hpp>
#include <cacheaside/detail/sha1.hpp>
#include <cacheaside/detail/single_flight.hpp>
#include <cacheaside/envelope.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/serializer.hpp>
#include <cacheaside/stats.hpp>

#include <algorithm>
#include <chrono>
#include <climits>
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
#include <vector>

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
/// instances and processes the Redis lease makes sure one caller loads. An instance runs one
/// background thread, started on its first load, that renews the leases of loads in flight.
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
        lockTtlArg_(std::to_string(options_.lockTtl.count())),
        breaker_(options_.breakerThreshold, options_.breakerCooldown),
        renewer_([this](const std::string& key, const std::string& lease) { renew(key, lease); },
                 std::max(options_.lockTtl / 3, std::chrono::milliseconds(1))) {}

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
  /// With a staleWindow, a stale value is returned at once to every caller but one: the caller
  /// that wins the refresh lease reloads it in its own call (so that the loader never outlives
  /// the call that passed it). If that reload throws, the stale value is returned (fail-safe).
  /// XFetch refreshes values the same way shortly before they expire.
  ///
  /// Redis failures never reach the caller: the loader's value is returned uncached and the
  /// failure is counted. Throws std::invalid_argument for an empty key, whatever the loader
  /// throws when no stale value can stand in (never cached, shared with the callers coalesced
  /// onto this call), LockTimeoutError under WaitTimeoutPolicy::Throw, and EntryError when a T
  /// loader meets a cached "not found".
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
    bool joined = false;
    Found found = flights_.run(
        rk, [&] { return fetch(key, rk, load, eff); },
        [&] {
          joined = true;
          Counters::bump(counters_.coalesced);
        });
    std::optional<T> result = std::move(found.value);
    if (found.refresh != Refresh::None) {
      // Only the caller that looked refreshes: the ones coalesced onto it take what it found.
      result = joined ? serveCurrent(key, std::move(result), found.refresh)
                      : refresh(key, rk, load, eff, std::move(result), found.refresh, found.pttl);
    }
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
  /// fails or the breaker is open (counted in stats()). A stale value is returned as it is.
  /// Throws std::invalid_argument for an empty key.
  std::optional<T> get(std::string_view key) {
    const std::string rk = detail::redisKey(options_.keyNamespace, key);
    if (!breaker_.allow(now())) {
      Counters::bump(counters_.breakerBypasses);
      return std::nullopt;
    }
    try {
      const Reply reply = redis(key, [&] { return client_.command({rk, {"GET", rk}}); });
      if (reply.isError()) {
        Counters::bump(counters_.redisErrors);
        return std::nullopt;
      }
      if (reply.type != Reply::Type::String) {
        return std::nullopt;
      }
      const auto env = envelope::decode(reply.str);
      if (!env) {
        decodeFailed(key);
        return std::nullopt;
      }
      if (env->kind != EntryKind::Value) {
        return std::nullopt;
      }
      return decodeValue(key, *env);
    } catch (const ConnectionError&) {
      return std::nullopt;
    }
  }

  /// Writes value for key with ttl (default: the cache's, with jitter, plus its staleWindow), to
  /// warm the cache or write through. Not fenced: it overwrites whatever the key holds, and a
  /// load or refresh in flight for the key will then not write back. Returns false, and counts why,
  /// when the value is larger than maxValueBytes, Redis fails or the breaker is open. Throws
  /// std::invalid_argument for an empty key or a non-positive ttl, and Error when the serializer
  /// cannot encode the value.
  bool set(std::string_view key, const T& value,
           std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    const std::string rk = detail::redisKey(options_.keyNamespace, key);
    if (ttl && ttl->count() <= 0) {
      throw std::invalid_argument("cacheaside: set() needs a positive ttl");
    }
    const auto stale = ttl ? std::chrono::milliseconds(0) : options_.staleWindow;
    std::string record;
    try {
      encodeValue(value, 0, stale, record);
    } catch (const std::exception& e) {
      Counters::bump(counters_.encodeFailures);
      throw Error("cacheaside: cannot serialize the value for key '" + detail::printableKey(key) +
                  "': " + e.what());
    }
    if (record.size() - envelope::kHeaderSize > options_.maxValueBytes) {
      Counters::bump(counters_.oversizedValues);
      return false;
    }
    if (!breaker_.allow(now())) {
      Counters::bump(counters_.breakerBypasses);
      return false;
    }
    const std::string px = std::to_string((ttl ? *ttl : jittered(options_.ttl) + stale).count());
    const std::string lk = rk + ":lease";
    try {
      // Dropping the refresh lease first fences a refresh in flight (its load may predate the
      // value set here); a refresh that takes the lease after this point loads after it too.
      const std::vector<Reply> replies = redis(key, [&] {
        return client_.pipeline({{rk, {"DEL", lk}}, {rk, {"SET", rk, record, "PX", px}}});
      });
      if (replies.at(0).isError() || replies.at(1).isError()) {
        Counters::bump(counters_.redisErrors);
        return false;
      }
      return true;
    } catch (const ConnectionError&) {
      return false;
    }
  }

  /// Deletes the value cached for key and any lease on it, so that a load or refresh in flight
  /// does not write back. Call it after the write to the source of truth has committed. Ignores
  /// the circuit breaker. Throws std::invalid_argument for an empty key, and ConnectionError or
  /// ReplyError when Redis fails: then the old value may be served until its TTL ends.
  void invalidate(std::string_view key) {
    invalidateRange(std::initializer_list<std::string_view>{key});
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

  /// Whether the circuit breaker currently bypasses Redis.
  bool breakerOpen() const { return breaker_.isOpen(); }

private:
  using Counters = detail::AtomicStats;
  using Clock = std::chrono::steady_clock;
  using Micros = std::chrono::microseconds;

  struct Effective {
    std::chrono::milliseconds ttl;
    std::chrono::milliseconds negativeTtl;
    std::chrono::milliseconds waitBudget;
    WaitTimeoutPolicy onWaitTimeout;
    std::chrono::milliseconds staleWindow;
  };

  // Why a value found in Redis should be reloaded now.
  enum class Refresh { None, Stale, Early };

  // What one look (shared by coalesced callers) found.
  struct Found {
    std::optional<T> value;
    Refresh refresh = Refresh::None;
    long long pttl = -1; // the value's remaining TTL when read (when it was asked for)
  };

  // What the look at Redis decided.
  enum class Next { Hit, Load, LoadUncached };

  Effective resolve(const CallOptions& call) const {
    const Effective eff{call.ttl.value_or(options_.ttl),
                        call.negativeTtl.value_or(options_.negativeTtl),
                        call.waitBudget.value_or(options_.waitBudget),
                        call.onWaitTimeout.value_or(options_.onWaitTimeout),
                        call.staleWindow.value_or(options_.staleWindow)};
    if (eff.ttl.count() <= 0 || eff.negativeTtl.count() <= 0 || eff.waitBudget.count() < 0 ||
        eff.staleWindow.count() < 0 || eff.staleWindow > std::chrono::hours(24 * 24)) {
      throw std::invalid_argument("cacheaside: CallOptions durations must be positive");
    }
    return eff;
  }

  Clock::time_point now() const { return options_.clock ? options_.clock() : Clock::now(); }

  Micros since(Clock::time_point start) const {
    return std::chrono::duration_cast<Micros>(now() - start);
  }

  template <typename Load>
  Found fetch(std::string_view key, const std::string& rk, Load& load, const Effective& eff) {
    const auto started = now();
    if (!breaker_.allow(started)) {
      Counters::bump(counters_.breakerBypasses);
      Counters::bump(counters_.loads);
      return {load(), Refresh::None};
    }
    const std::string lease = makeLease();
    Found found;
    const Next next = lookup(key, rk, lease, eff, found);
    if (next == Next::Hit) {
      emitSince(EventType::Hit, key, started);
      return found;
    }
    if (next == Next::Load) {
      found.value = loadAndFill(key, rk, lease, load, eff);
    } else {
      Counters::bump(counters_.loads);
      found.value = load();
    }
    emitSince(EventType::Miss, key, started);
    return found;
  }

  // One pipelined SET NX PX GET + PTTL reads the value and its remaining TTL and, when there is
  // no value, takes the lease (a cache with neither XFetch nor a stale window skips the PTTL). A
  // caller that finds someone else's lease polls with growing pauses until the value appears, the
  // lease goes (then the same command takes it), or the wait budget runs out.
  Next lookup(std::string_view key, const std::string& rk, const std::string& lease,
              const Effective& eff, Found& found) {
    // The remaining TTL matters only for stale values and XFetch; without them, one command.
    std::vector<Command> look{{rk, {"SET", rk, lease, "NX", "PX", lockTtlArg_, "GET"}}};
    if (options_.xfetchBeta > 0 || eff.staleWindow.count() > 0) {
      look.push_back({rk, {"PTTL", rk}});
    }
    std::optional<Clock::time_point> deadline; // read the clock only once there is a wait
    auto pause = options_.pollInitial;
    bool first = true;
    bool waited = false;
    std::vector<Reply> replies;
    try {
      replies = redis(key, [&] { return client_.pipeline(look); });
    } catch (const ConnectionError&) {
      countMiss(first);
      return Next::LoadUncached;
    }
    for (;; first = false) {
      const Reply& reply = replies.at(0);
      if (reply.isError() || (!reply.isNil() && reply.type != Reply::Type::String)) {
        Counters::bump(counters_.redisErrors);
        if (first && reply.isError() && reply.str.compare(0, 9, "WRONGTYPE") != 0) {
          // Redis refuses writes (OOM, MISCONF, READONLY, NOREPLICAS) but may still read:
          // serve hits with a plain GET rather than loading every request.
          return readOnlyLookup(key, rk, found);
        }
        countMiss(first); // another program's data (WRONGTYPE): left alone
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
        if (!deadline) {
          deadline = now() + eff.waitBudget;
        }
        if (now() + pause > *deadline) {
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
        try {
          replies = redis(key, [&] { return client_.pipeline(look); });
        } catch (const ConnectionError&) {
          // One timeout per call at most: a failing Redis must not stretch the wait to the
          // budget. (Under overload, raise commandTimeout rather than the budget.)
          return Next::LoadUncached;
        }
        continue;
      }
      if (env) {
        if (env->kind == EntryKind::Negative) {
          found.value.reset();
          countHit(first);
          return Next::Hit;
        }
        found.value = decodeValue(key, *env);
        if (found.value) {
          if (replies.size() > 1) {
            found.refresh = refreshReason(*env, replies[1]);
            found.pttl = replies[1].type == Reply::Type::Integer ? replies[1].integer : -1;
          }
          countHit(first);
          return Next::Hit;
        }
      } else {
        decodeFailed(key);
      }
      // Undecodable: take the lease over these exact bytes, so the fill replaces them.
      countMiss(first);
      try {
        replies = {redis(key,
                         [&] {
                           return evalScript(client_, detail::takeoverScript(), {rk},
                                             {detail::sha1Hex(reply.str), lease, lockTtlArg_});
                         }),
                   Reply{}};
      } catch (const ConnectionError&) {
        return Next::LoadUncached;
      }
    }
  }

  // The lookup for a Redis that refuses writes: a value is a hit (no refresh, nothing can be
  // written back); anything else loads without caching.
  Next readOnlyLookup(std::string_view key, const std::string& rk, Found& found) {
    try {
      const Reply reply = redis(key, [&] { return client_.command({rk, {"GET", rk}}); });
      const auto env =
          reply.type == Reply::Type::String ? envelope::decode(reply.str) : std::nullopt;
      if (env && env->kind == EntryKind::Negative) {
        countHit(true);
        return Next::Hit;
      }
      if (env && env->kind == EntryKind::Value) {
        found.value = decodeValue(key, *env);
        if (found.value) {
          countHit(true);
          return Next::Hit;
        }
      }
    } catch (const ConnectionError&) {
      // Counted by redis().
    }
    countMiss(true);
    return Next::LoadUncached;
  }

  // Stale when the key's remaining TTL is inside the stale window it was written with; early
  // (XFetch) when the remaining fresh time <= -loadTime * beta * ln(rand).
  Refresh refreshReason(const Envelope& env, const Reply& pttl) const {
    if (pttl.type != Reply::Type::Integer || pttl.integer < 0) {
      return Refresh::None; // no expiry, or unknown
    }
    const long long fresh = pttl.integer - static_cast<long long>(env.staleMillis);
    if (fresh <= 0) {
      return env.staleMillis > 0 ? Refresh::Stale : Refresh::None;
    }
    if (options_.xfetchBeta > 0 && env.loadMillis > 0) {
      const double gap = -static_cast<double>(env.loadMillis) * options_.xfetchBeta *
                         std::log(detail::ThreadRandom::local().unitOpenClosed());
      if (static_cast<double>(fresh) <= gap) {
        return Refresh::Early;
      }
    }
    return Refresh::None;
  }

  template <typename Load>
  std::optional<T> loadAndFill(std::string_view key, const std::string& rk,
                               const std::string& lease, Load& load, const Effective& eff) {
    const auto started = now();
    std::optional<T> value;
    Counters::bump(counters_.loads);
    {
      const detail::LeaseRenewer::Registration renewal(renewer_, renewer_.add(rk, lease));
      try {
        value = load();
      } catch (...) {
        release(key, rk, lease);
        throw;
      }
    }
    writeBack(key, detail::fillScript(), {rk}, rk, lease, value, since(started), eff);
    return value;
  }

  // The caller holding no lease for a value it found stale or about to expire: take the refresh
  // lease, reload, and write back; or, if someone else refreshes, return what was found.
  template <typename Load>
  std::optional<T> refresh(std::string_view key, const std::string& rk, Load& load,
                           const Effective& eff, std::optional<T> current, Refresh why,
                           long long seenPttl) {
    const std::string lk = rk + ":lease";
    const std::string lease = makeLease();
    try {
      // With the lease, the value's TTL now: if it grew, someone refreshed the value since this
      // caller read it (and dropped their lease), so there is nothing left to do.
      const std::vector<Reply> taken = redis(key, [&] {
        return client_.pipeline(
            {{rk, {"SET", lk, lease, "NX", "PX", lockTtlArg_}}, {rk, {"PTTL", rk}}});
      });
      if (taken.at(0).isError()) {
        Counters::bump(counters_.redisErrors);
        return serveCurrent(key, std::move(current), why);
      }
      if (taken[0].isNil()) {
        return serveCurrent(key, std::move(current), why); // refreshing elsewhere, or throttled
      }
      if (taken.at(1).type == Reply::Type::Integer && taken[1].integer > seenPttl) {
        release(key, lk, lease);
        return serveCurrent(key, std::move(current), why);
      }
    } catch (const ConnectionError&) {
      return serveCurrent(key, std::move(current), why);
    }
    const auto started = now();
    std::optional<T> value;
    Counters::bump(counters_.loads);
    {
      const detail::LeaseRenewer::Registration renewal(renewer_, renewer_.add(lk, lease));
      try {
        value = load();
      } catch (const std::exception& e) {
        failSafe(key, lk, lease, e.what());
        return serveCurrent(key, std::move(current), why);
      } catch (...) {
        failSafe(key, lk, lease, "non-standard exception");
        return serveCurrent(key, std::move(current), why);
      }
    }
    Counters::bump(counters_.refreshes);
    emit(EventType::Refresh, key, since(started), why == Refresh::Stale ? "stale" : "early");
    writeBack(key, detail::refreshFillScript(), {rk, lk}, lk, lease, value, since(started), eff);
    return value;
  }

  std::optional<T> serveCurrent(std::string_view key, std::optional<T> current, Refresh why) {
    if (why == Refresh::Stale) {
      Counters::bump(counters_.staleServed);
      emit(EventType::StaleServed, key);
    }
    return current;
  }

  // The refresh failed and a value stands in: turn the lease into a marker that keeps every
  // process from retrying for failSafeThrottle.
  void failSafe(std::string_view key, const std::string& lk, const std::string& lease,
                std::string_view what) {
    Counters::bump(counters_.failSafes);
    emit(EventType::FailSafe, key, Micros(0), what);
    const std::string throttle = makeLease();
    const std::string px = std::to_string(options_.failSafeThrottle.count());
    fill(key, detail::fillScript(), {lk}, {lease, throttle, px});
  }

  // Writes a loaded value back through a fenced script holding lease (at leaseKey), or, when it
  // must not be cached, gives the lease up.
  void writeBack(std::string_view key, const Script& script,
                 const std::vector<std::string_view>& keys, const std::string& leaseKey,
                 const std::string& lease, const std::optional<T>& value, Micros took,
                 const Effective& eff) {
    std::string record;
    if (!encodeRecord(value, took, eff, record)) {
      release(key, leaseKey, lease);
      return;
    }
    const std::string px = std::to_string(
        (value ? jittered(eff.ttl) + eff.staleWindow : jittered(eff.negativeTtl)).count());
    fill(key, script, keys, {lease, record, px});
  }

  // Encodes a loaded value (or "not found"); false, counted, when it must not be cached.
  bool encodeRecord(const std::optional<T>& value, Micros took, const Effective& eff,
                    std::string& record) {
    const auto loadMillis =
        static_cast<std::uint32_t>(std::min<long long>(took.count() / 1000, UINT32_MAX));
    if (!value) {
      envelope::appendHeader(record, EntryKind::Negative, loadMillis);
      return true;
    }
    try {
      encodeValue(*value, loadMillis, eff.staleWindow, record);
    } catch (const std::exception&) {
      Counters::bump(counters_.encodeFailures);
      return false;
    }
    if (record.size() - envelope::kHeaderSize > options_.maxValueBytes) {
      Counters::bump(counters_.oversizedValues);
      return false;
    }
    return true;
  }

  // Runs a fenced write-back script; a refusal means the lease was lost meanwhile.
  void fill(std::string_view key, const Script& script, const std::vector<std::string_view>& keys,
            const std::vector<std::string_view>& args) {
    try {
      const Reply reply = redis(key, [&] { return evalScript(client_, script, keys, args); });
      if (reply.isError()) {
        Counters::bump(counters_.redisErrors);
      } else if (reply.integer == 0) {
        Counters::bump(counters_.fencedWrites);
      }
    } catch (const ConnectionError&) {
      // Counted by redis(); the lease expires by itself.
    }
  }

  // Best effort: a lease that cannot be released expires after lockTtl.
  void release(std::string_view key, const std::string& leaseKey,
               const std::string& lease) noexcept {
    try {
      if (redis(key, [&] {
            return evalScript(client_, detail::releaseScript(), {leaseKey}, {lease});
          }).isError()) {
        Counters::bump(counters_.redisErrors);
      }
    } catch (...) {
      // Counted by redis() when Redis failed.
    }
  }

  // Called by the renewer thread every lockTtl / 3 for each load in flight.
  void renew(const std::string& leaseKey, const std::string& lease) noexcept {
    try {
      redis({}, [&] {
        return evalScript(client_, detail::renewScript(), {leaseKey}, {lease, lockTtlArg_});
      });
    } catch (...) {
      // Counted by redis(); the next renewal tries again.
    }
  }

  template <typename Range> void invalidateRange(const Range& keys) {
    std::vector<std::string> rks;
    for (const auto& key : keys) {
      const std::string rk = detail::redisKey(options_.keyNamespace, std::string_view(key));
      rks.push_back(rk + ":lease");
      rks.push_back(rk);
    }
    if (rks.empty()) {
      return;
    }
    std::vector<Command> commands;
    commands.reserve(rks.size() / 2);
    for (std::size_t i = 0; i < rks.size(); i += 2) {
      commands.push_back(
          {rks[i + 1], {"DEL", rks[i + 1], rks[i]}}); // one slot: both share the hash tag
    }
    const std::vector<Reply> replies = redis({}, [&] { return client_.pipeline(commands); });
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].isError()) {
        Counters::bump(counters_.redisErrors);
        throw ReplyError("cacheaside: invalidate of '" + detail::printableKey(rks[2 * i + 1]) +
                         "' failed: " + replies[i].str);
      }
    }
  }

  // Every Redis call goes through here: transport failures are counted, reported and fed to the
  // circuit breaker (then rethrown); successes close it.
  template <typename Call> auto redis(std::string_view key, Call&& call) -> decltype(call()) {
    const auto started = now();
    try {
      auto reply = call();
      if (breaker_.onSuccess() == detail::CircuitBreaker::Change::Closed) {
        emit(EventType::BreakerClose, {});
      }
      return reply;
    } catch (const ConnectionError& e) {
      Counters::bump(counters_.redisErrors);
      emit(EventType::RedisError, key, since(started), e.what());
      if (breaker_.onFailure(now()) == detail::CircuitBreaker::Change::Opened) {
        emit(EventType::BreakerOpen, {}, options_.breakerCooldown);
      }
      throw;
    }
  }

  // An event timed from started; the clock is read only when someone listens.
  void emitSince(EventType type, std::string_view key, Clock::time_point started) const {
    if (options_.onEvent) {
      emit(type, key, since(started));
    }
  }

  void emit(EventType type, std::string_view key, Micros duration = Micros(0),
            std::string_view detail = {}) const noexcept {
    if (!options_.onEvent) {
      return;
    }
    try {
      options_.onEvent(Event{type, key, duration, detail});
    } catch (...) {
      // A handler that throws must not change what the cache does.
    }
  }

  void decodeFailed(std::string_view key) {
    Counters::bump(counters_.decodeFailures);
    emit(EventType::DecodeFailure, key);
  }

  std::optional<T> decodeValue(std::string_view key, const Envelope& env) {
    try {
      return S::decode(env.payload);
    } catch (const std::exception& e) {
      Counters::bump(counters_.decodeFailures);
      emit(EventType::DecodeFailure, key, Micros(0), e.what());
      return std::nullopt;
    }
  }

  static void encodeValue(const T& value, std::uint32_t loadMillis, std::chrono::milliseconds stale,
                          std::string& record) {
    envelope::appendHeader(record, EntryKind::Value, loadMillis,
                           static_cast<std::uint32_t>(stale.count()));
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
  detail::CircuitBreaker breaker_;
  detail::SingleFlight<Found> flights_;
  Counters counters_;
  // Last: its thread calls renew(), which uses the members above; it is joined first.
  detail::LeaseRenewer renewer_;
};

} // namespace cacheaside
