#pragma once
/// \file cache_aside.hpp
/// CacheAside<T>: get-or-load through Redis with a lease per key, so that one caller loads a
/// missing value while the others wait for it, and a load that overlapped an invalidation never
/// writes its (possibly stale) value back. Optionally serves stale values while one caller
/// refreshes them, refreshes hot values early (XFetch), and bypasses a failing Redis.
///
/// This class is the driver: the decisions are the flows' (flow/), the commands the store's
/// (store/), the bytes the codec's (codec/). It runs the flows against a RedisClient, and owns
/// the in-process single-flight, the lease renewer and the circuit breaker.

#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/codec/record.hpp>
#include <cacheaside/detail/backend.hpp>
#include <cacheaside/detail/batch.hpp>
#include <cacheaside/detail/fork.hpp>
#include <cacheaside/detail/lease_renewer.hpp>
#include <cacheaside/detail/random.hpp>
#include <cacheaside/detail/runner.hpp>
#include <cacheaside/detail/single_flight.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/flow/get_flow.hpp>
#include <cacheaside/flow/refresh_flow.hpp>
#include <cacheaside/near/tier.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/stats.hpp>
#include <cacheaside/store/store.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cacheaside {

namespace detail {
template <typename T> struct IsOptional : std::false_type {};
template <typename T> struct IsOptional<std::optional<T>> : std::true_type {};

// What a batch loader's result maps keys to: T, or std::optional<T>.
template <typename R>
using BatchMapped = std::decay_t<decltype(std::declval<R&>().begin()->second)>;

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
/// background thread, started on its first load, that renews the leases of loads in flight. A
/// forked child starts with no calls, leases or renewals of its parent's.
///
/// \tparam T the cached type; copyable.
/// \tparam S the serializer (see codec/serializer.hpp); JSON by default, raw bytes for
/// std::string.
template <typename T, typename S = Serializer<T>> class CacheAside {
public:
  /// The cached type.
  using value_type = T;
  /// The serializer.
  using serializer_type = S;

  /// Builds a cache over client (borrowed; it must outlive the cache). Throws
  /// std::invalid_argument when options.validate() does.
  explicit CacheAside(RedisClient& client, CacheOptions options = {})
      : options_((options.validate(), std::move(options))), store_(options_.lockTtl),
        codec_(CodecOptions{options_.maxValueBytes, options_.compressor, options_.compressAbove}),
        backend_(client, options_, store_), runner_(backend_, store_, codec_),
        batches_(backend_, store_, runner_), state_(newState()),
        near_(options_.nearCache.feed
                  ? std::make_unique<near::NearTier<T>>(options_.nearCache, options_.keyNamespace)
                  : nullptr),
        forkHook_(*this), forkRegistration_(forkHook_) {
    runner_.setNear(near_.get());
    batches_.setNear(near_.get());
  }

  ~CacheAside() = default;
  CacheAside(const CacheAside&) = delete;
  CacheAside& operator=(const CacheAside&) = delete;

  /// Returns the value cached for key, or calls loader, caches what it returns and returns it.
  ///
  /// The loader is any callable returning T (then this returns T), or std::optional<T> (then
  /// this returns std::optional<T>, and an empty result is cached for negativeTtl as "not
  /// found"). Among concurrent callers of a key, in this process and every other one that shares
  /// the Redis, one calls its loader; the others wait for its value (see waitBudget). A value
  /// loaded while the key was invalidated is returned but not written back, and no call that
  /// starts after invalidate(key) returned is given a value loaded before it.
  ///
  /// With a staleWindow, a stale value is returned at once to every caller but one: the caller
  /// that wins the refresh lease reloads it in its own call (so that the loader never outlives
  /// the call that passed it). If that reload throws, the stale value is returned (fail-safe).
  /// XFetch refreshes values the same way shortly before they expire.
  ///
  /// Redis failures never reach the caller: the loader's value is returned uncached and the
  /// failure is counted. outcome, when given, receives how the value was obtained. Throws
  /// std::invalid_argument for an empty key or invalid call options, whatever the loader throws
  /// when no stale value can stand in (never cached, shared with the callers coalesced onto
  /// this call), LockTimeoutError under WaitTimeoutPolicy::Throw, EntryError when a T loader
  /// meets a cached "not found", and Error when the loader calls getOrLoad for its own key.
  template <typename Loader>
  detail::LoadResult<T, Loader> getOrLoad(std::string_view key, Loader&& loader,
                                          const CallOptions& call = {},
                                          Outcome* outcome = nullptr) {
    using Loaded = std::decay_t<std::invoke_result_t<Loader&>>;
    constexpr bool kMaybe = detail::IsOptional<Loaded>::value;
    static_assert(kMaybe ? std::is_same_v<Loaded, std::optional<T>>
                         : std::is_convertible_v<Loaded, T>,
                  "cacheaside: the loader must return T or std::optional<T>");
    const flow::Settings settings = settingsFor(call);
    const store::Keys keys = store::keysFor(options_.keyNamespace, key);
    // A near copy carries no tag generations: calls that name tags read Redis.
    const bool nearOn = near_ && settings.tags.empty();
    if (nearOn) {
      if (auto held = near_->find(keys.value)) {
        if (outcome != nullptr) {
          *outcome = Outcome::Hit;
        }
        return detail::LoadResult<T, Loader>(*held);
      }
    }
    auto load = [&loader]() -> std::optional<T> {
      if constexpr (kMaybe) {
        return std::invoke(loader);
      } else {
        return std::optional<T>(std::invoke(loader));
      }
    };
    bool joined = false;
    Found found;
    for (int attempt = 0; attempt < 2; ++attempt) {
      joined = false;
      found = state_->flights.run(
          keys.value,
          [&](typename detail::SingleFlight<Found>::Gate& gate) {
            return nearOn ? fetchNear(key, keys, settings, load, gate)
                          : runner_.fetch(key, keys, settings, load, state_->renewer, gate);
          },
          [&] {
            joined = true;
            backend_.count(Counter::coalesced);
          },
          attempt == 0, settings.entry.waitBudget);
      // A joined load that was not written back through its lease may predate an invalidation
      // this caller must see (one that fenced it): look again, on its own.
      if (!(joined && found.unconfirmed)) {
        break;
      }
    }
    std::optional<T> result = std::move(found.value);
    Outcome how = joined ? Outcome::Coalesced : found.outcome;
    if (found.refresh != flow::Refresh::None) {
      // Only the caller that looked refreshes: the ones coalesced onto it take what it found.
      result = joined ? runner_.serveCurrent(key, std::move(result), found.refresh, how)
                      : runner_.refresh(key, keys, settings, load, std::move(result), found, how,
                                        state_->renewer);
    }
    if (outcome != nullptr) {
      *outcome = how;
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

  /// getOrLoad for many keys at once: the value (or std::nullopt) of each key of keys, in order.
  ///
  /// Looks every key up in one pipeline (one round trip per node), calls batchLoader once with
  /// exactly the keys whose lease this caller won (distinct, in first-seen order), and writes
  /// what it returns back through those leases, fenced as single loads are, in one more
  /// pipeline. Keys another caller is loading are polled together, one pipeline per round,
  /// within the wait budget (with the near cache on, a wait ends early when the feed reports
  /// one of those keys changed, as the other caller's fill does); if some of their leases fall
  /// to this caller meanwhile, the loader is called again for those keys only. Pipelines carry
  /// at most 1024 commands each. With the near cache on, the keys it holds are answered from it
  /// and left out of the pipeline, and values read from Redis are installed in it as getOrLoad
  /// installs them; calls that name tags bypass it.
  ///
  /// batchLoader takes a const std::vector<std::string>& and returns a range of (key, value)
  /// pairs, e.g. std::unordered_map<std::string, T> or std::map<std::string, std::optional<T>>.
  /// With std::optional<T> values, a key the loader does not return (or returns empty) is cached
  /// as "not found" for negativeTtl; with T values it is not cached. Either way its answer is
  /// std::nullopt, as is a cached "not found". Keys returned that were not asked for are
  /// ignored. Duplicate keys are looked up and loaded once and answered at every position; an
  /// empty keys sends nothing. Stale values are served without being refreshed (getOrLoad
  /// refreshes them), and calls of this instance are not coalesced with getOrLoad calls (the
  /// Redis lease still makes one of them load).
  ///
  /// Throws std::invalid_argument for an empty key or invalid call options; what batchLoader
  /// throws, after the leases taken for it are given up (nothing of the batch is cached by
  /// this call then); and LockTimeoutError under WaitTimeoutPolicy::Throw, after the other keys
  /// are done. Redis failures never reach the caller: the loader's values are returned
  /// uncached.
  template <typename Range, typename BatchLoader>
  std::vector<std::optional<T>> getOrLoadMany(const Range& keys, BatchLoader&& batchLoader,
                                              const CallOptions& call = {}) {
    using Returned =
        std::decay_t<std::invoke_result_t<BatchLoader&, const std::vector<std::string>&>>;
    using Mapped = detail::BatchMapped<Returned>;
    constexpr bool kMaybe = detail::IsOptional<Mapped>::value;
    static_assert(kMaybe ? std::is_same_v<Mapped, std::optional<T>>
                         : std::is_convertible_v<Mapped, T>,
                  "cacheaside: the batch loader must return (key, T) or (key, std::optional<T>) "
                  "pairs");
    flow::Settings settings = settingsFor(call);
    // A batch refreshes nothing: it serves stale values as they are. It reads the TTL only to
    // bound the near copies it installs (calls that name tags bypass the near cache).
    settings.readTtl = near_ && settings.tags.empty();
    settings.peekFirst = false; // hits and leases in one round trip
    const detail::DistinctKeys distinct(keys);
    using Batch = detail::BatchRunner<T, S>;
    auto load = [&](const std::vector<std::size_t>& which) {
      std::vector<std::string> asked;
      asked.reserve(which.size());
      std::unordered_map<std::string_view, std::size_t> at;
      for (std::size_t n = 0; n < which.size(); ++n) {
        asked.emplace_back(distinct.keys[which[n]]);
      }
      for (std::size_t n = 0; n < asked.size(); ++n) {
        at.emplace(asked[n], n);
      }
      std::vector<typename Batch::Answer> answers(which.size());
      Returned loaded =
          std::invoke(batchLoader, static_cast<const std::vector<std::string>&>(asked));
      for (auto& [k, v] : loaded) {
        const auto it = at.find(std::string_view(k));
        if (it == at.end()) {
          continue; // not asked for: ignored
        }
        answers[it->second].value = std::optional<T>(std::move(v));
      }
      return answers;
    };
    std::vector<std::optional<T>> found = batches_.fetch(distinct.keys, options_.keyNamespace,
                                                         settings, kMaybe, load, state_->renewer);
    if (!distinct.duplicates()) {
      return found;
    }
    std::vector<std::size_t> uses(found.size(), 0);
    for (const std::size_t i : distinct.slot) {
      ++uses[i];
    }
    std::vector<std::optional<T>> out;
    out.reserve(distinct.slot.size());
    for (const std::size_t i : distinct.slot) {
      out.push_back(--uses[i] == 0 ? std::move(found[i]) : found[i]); // the last use moves
    }
    return out;
  }

  /// getOrLoad, returning the value shared: with the near cache on, a near hit returns the held
  /// value itself and copies nothing (calls that name tags bypass the near cache). Null for a
  /// "not found" of a std::optional<T> loader. Throws as getOrLoad does.
  template <typename Loader>
  std::shared_ptr<const T> getOrLoadShared(std::string_view key, Loader&& loader,
                                           const CallOptions& call = {},
                                           Outcome* outcome = nullptr) {
    (void)call.applyTo(options_.entry()); // a near hit refuses what a Redis read would
    if (near_ && call.tags.empty()) {
      if (auto held = near_->find(store::valueKey(options_.keyNamespace, key))) {
        if (outcome != nullptr) {
          *outcome = Outcome::Hit;
        }
        return held;
      }
    }
    auto result = getOrLoad(key, std::forward<Loader>(loader), call, outcome);
    if constexpr (detail::IsOptional<decltype(result)>::value) {
      return result ? std::make_shared<const T>(std::move(*result)) : nullptr;
    } else {
      return std::make_shared<const T>(std::move(result));
    }
  }

  /// The cached value for key, without loading: std::nullopt when there is none, when it is
  /// being loaded, when it is a cached "not found", when it cannot be decoded, and when Redis
  /// fails or the breaker is open (counted in stats()). A stale value is returned as it is.
  /// With the near cache on, a near copy is returned as getOrLoad would, and a fresh value read
  /// from Redis is installed as getOrLoad installs it. Throws std::invalid_argument for an
  /// empty key.
  std::optional<T> get(std::string_view key) {
    const store::Keys keys = store::keysFor(options_.keyNamespace, key);
    if (near_) {
      if (auto held = near_->find(keys.value)) {
        return *held;
      }
    }
    if (!backend_.allow()) {
      return std::nullopt;
    }
    try {
      typename near::NearTier<T>::Ticket ticket;
      if (near_) {
        ticket = near_->ticket(keys.value); // before the read: a later invalidation refuses it
      }
      const std::vector<Reply> replies = backend_.exchange(key, {store_.get(keys)});
      const store::Lookup found = store::Store::parseGet(replies.front());
      if (found.kind != store::Lookup::Kind::Record) {
        if (found.kind != store::Lookup::Kind::Empty) {
          backend_.count(Counter::redisErrors);
        }
        return std::nullopt;
      }
      const auto env = codec::inspect(found.bytes);
      if (!env) {
        runner_.decodeFailed(key, "not a cacheaside record");
        return std::nullopt;
      }
      if (env->kind != EntryKind::Value) {
        return std::nullopt;
      }
      std::optional<T> value = runner_.decodeValue(key, *env);
      if (near_ && value) {
        nearOfferRead(keys.value, ticket, *value, *env);
      }
      return value;
    } catch (const ConnectionError&) {
      return std::nullopt;
    }
  }

  /// Writes value for key with ttl (default: the cache's, with jitter, plus its staleWindow), to
  /// warm the cache or write through. Not fenced: it overwrites whatever the key holds, and a
  /// load or refresh in flight for the key will then not write back. Returns false, and counts
  /// why, when the value is larger than maxValueBytes, Redis fails or the breaker is open.
  /// Throws std::invalid_argument for an empty key or a ttl outside (0, 10 years], and Error
  /// when the serializer cannot encode the value.
  bool set(std::string_view key, const T& value,
           std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    const store::Keys keys = store::keysFor(options_.keyNamespace, key);
    if (ttl && (ttl->count() <= 0 || *ttl > kMaxEntryDuration)) {
      throw std::invalid_argument("cacheaside: set() needs a ttl in (0, 10 years]");
    }
    const auto stale = ttl ? std::chrono::milliseconds(0) : options_.staleWindow;
    std::string record, error;
    switch (codec_.encode(value, 0, static_cast<std::uint32_t>(stale.count()), record, error)) {
    case codec::Encoded::Failed:
      backend_.count(Counter::encodeFailures);
      throw Error("cacheaside: cannot serialize the value for key '" + detail::printableKey(key) +
                  "': " + error);
    case codec::Encoded::TooLarge:
      backend_.count(Counter::oversizedValues);
      return false;
    case codec::Encoded::Ok:
      break;
    }
    if (!backend_.allow()) {
      return false;
    }
    const std::string ms =
        std::to_string((ttl ? *ttl
                            : flow::jittered(options_.ttl, options_.ttlJitter,
                                             detail::ThreadRandom::local().unitOpenClosed()) +
                                  stale)
                           .count());
    std::vector<Command> commands;
    store::Store::set(keys, record, ms, commands);
    try {
      const std::vector<Reply> replies = backend_.exchange(key, commands);
      nearEvict(keys.value);
      state_->flights.forget(keys.value); // later calls must not join a load from before
      if (std::any_of(replies.begin(), replies.end(), [](const Reply& r) { return r.isError(); })) {
        backend_.count(Counter::redisErrors);
        return false;
      }
      return true;
    } catch (const ConnectionError&) {
      nearEvict(keys.value); // the write may have happened
      return false;
    }
  }

  /// Deletes the value cached for key and any lease on it, so that a load or refresh in flight
  /// does not write back, and no call that starts after this returns gets a value loaded
  /// before it. Call it after the write to the source of truth has committed. Ignores the
  /// circuit breaker. Throws std::invalid_argument for an empty key, and ConnectionError or
  /// ReplyError when Redis fails: then the old value may be served until its TTL ends.
  void invalidate(std::string_view key) {
    invalidateRange(std::initializer_list<std::string_view>{key});
  }

  /// Invalidates several keys in one call (one command per key, so that keys in different
  /// Redis Cluster slots are fine). Throws as invalidate(key) does.
  void invalidate(std::initializer_list<std::string_view> keys) { invalidateRange(keys); }

  /// Invalidates every key of a range of strings or string views, in one call.
  template <typename Range,
            typename = std::enable_if_t<!std::is_convertible_v<const Range&, std::string_view>>>
  void invalidate(const Range& keys) {
    invalidateRange(keys);
  }

  /// Invalidates every value written by a call that named tag (CallOptions::tags), in one
  /// command whatever their number: it starts a new generation of the tag, and a value stamped
  /// with an older one reads as a miss to calls naming the tag. As invalidate(key) does for
  /// one key, it keeps the promise that no call naming tag that starts after this returns gets
  /// a value whose load began before, and that a load overlapping it is returned to its own
  /// caller but never read as fresh by another. Calls that do not name tag (and get()) do not
  /// check it. Ignores the circuit breaker. Throws std::invalid_argument for an empty tag, and
  /// ConnectionError or ReplyError when Redis fails.
  void invalidateTag(std::string_view tag) {
    invalidateTagRange(std::initializer_list<std::string_view>{tag});
  }

  /// invalidateTag for several tags in one call (one command per tag, in one pipeline).
  void invalidateTags(std::initializer_list<std::string_view> tags) { invalidateTagRange(tags); }

  /// invalidateTag for every tag of a range of strings or string views, in one call.
  template <typename Range,
            typename = std::enable_if_t<!std::is_convertible_v<const Range&, std::string_view>>>
  void invalidateTags(const Range& tags) {
    invalidateTagRange(tags);
  }

  /// The counters so far; safe to call from any thread at any time.
  Stats stats() const noexcept { return backend_.stats(); }

  /// The options the cache was built with.
  const CacheOptions& options() const noexcept { return options_; }

  /// How many keys have a getOrLoad in flight in this instance now (0 when idle).
  std::size_t inFlight() const { return state_->flights.inFlight(); }

  /// Whether the circuit breaker currently bypasses Redis.
  bool breakerOpen() const { return backend_.breakerOpen(); }

  /// The near tier's counters (all zero, bypassed, when the near cache is off).
  NearStats nearStats() const noexcept { return near_ ? near_->stats() : NearStats{}; }

private:
  using Found = typename detail::Runner<T, S>::Found;

  // What a forked child must not inherit: the calls in flight and the lease renewals.
  struct State {
    detail::SingleFlight<Found> flights;
    detail::LeaseRenewer renewer;
    explicit State(CacheAside& cache)
        : renewer(
              [&cache](const std::vector<detail::LeaseJob>& jobs) {
                return cache.backend_.sendLeaseJobs(jobs);
              },
              std::max(cache.options_.lockTtl / 3, std::chrono::milliseconds(1)),
              cache.options_.lockTtl) {}
  };

  std::unique_ptr<State> newState() { return std::make_unique<State>(*this); }

  // Resets the cache's per-process state in a forked child (see detail/fork.hpp).
  struct ForkHook final : detail::ForkAware {
    explicit ForkHook(CacheAside& cache) : cache_(cache) {}
    void forkedChild() noexcept override {
      (void)cache_.state_.release(); // its locks and thread belong to the parent: never touch
      if (cache_.near_) {
        cache_.near_->forked(); // the feed's thread stayed in the parent
      }
      try {
        cache_.state_ = cache_.newState();
      } catch (...) {
        std::terminate(); // a child that cannot allocate a few hundred bytes cannot go on
      }
    }
    CacheAside& cache_;
  };

  flow::Settings settingsFor(const CallOptions& call) const {
    flow::Settings s;
    s.entry = call.applyTo(options_.entry());
    s.ttlJitter = options_.ttlJitter;
    s.xfetchBeta = options_.xfetchBeta;
    s.pollInitial = options_.pollInitial;
    s.pollMax = options_.pollMax;
    s.failSafeThrottle = options_.failSafeThrottle;
    s.peekFirst = options_.lookup == LookupMode::Peek;
    if (!call.tags.empty()) {
      s.tags = call.tags;
      s.tagKeys.reserve(call.tags.size());
      for (const std::string& tag : call.tags) {
        s.tagKeys.push_back(store::tagKey(options_.keyNamespace, tag));
      }
    }
    return s;
  }

  // The near tier (near/): consulted before the single-flight, filled after a Redis hit with
  // the ticket taken before the read, evicted by this process's own writes.
  template <typename Load, typename Gate>
  Found fetchNear(std::string_view key, const store::Keys& keys, const flow::Settings& settings,
                  Load& load, Gate& gate) {
    const auto ticket = near_->ticket(keys.value);
    Found found = runner_.fetch(key, keys, settings, load, state_->renewer, gate);
    if (found.outcome == Outcome::Hit && found.value && found.refresh == flow::Refresh::None) {
      near_->offer(keys.value, ticket, *found.value, found.bytes, nearTtl(found, settings));
    }
    return found;
  }

  // get()'s install: the remaining TTL from the record's expiry stamp and the server clock
  // estimate (a plain GET reads no PTTL); not installed when freshness is judged and that
  // estimate is missing, nor when the value is stale already.
  void nearOfferRead(const std::string& redisKey, const typename near::NearTier<T>::Ticket& ticket,
                     const T& value, const Envelope& env) {
    const flow::Settings settings = settingsFor({});
    Found found;
    found.staleMillis = env.staleMillis;
    found.loadMillis = env.loadMillis;
    const std::uint64_t expiresAt = envelope::expiresAt(env);
    const auto serverNow = store_.clock().serverNowMillis(std::chrono::steady_clock::now());
    if (expiresAt != 0 && serverNow) {
      found.pttl = std::max(static_cast<long long>(expiresAt) - *serverNow, 0LL);
    } else if (settings.xfetchBeta > 0 || env.staleMillis > 0 ||
               settings.entry.staleWindow.count() > 0) {
      return;
    }
    near_->offer(redisKey, ticket, value, env.payload.size(), nearTtl(found, settings));
  }

  // Until Redis would call the value stale, less the margin in which XFetch may refresh it
  // early (-ln(u) > 4 for under 2 % of draws); the tier's maxTtl when the TTL was not read.
  static std::chrono::milliseconds nearTtl(const Found& found, const flow::Settings& settings) {
    return flow::nearLifetime(found.pttl, found.staleMillis, found.loadMillis, settings.xfetchBeta);
  }

  void nearEvict(const std::string& redisKey) {
    if (near_) {
      near_->evict(redisKey);
    }
  }

  void nearEvict(const std::vector<store::Keys>& all) {
    for (const auto& k : all) {
      nearEvict(k.value);
    }
  }

  template <typename Range> void invalidateRange(const Range& keys) {
    std::vector<store::Keys> all;
    for (const auto& key : keys) {
      all.push_back(store::keysFor(options_.keyNamespace, std::string_view(key)));
    }
    if (all.empty()) {
      return;
    }
    std::vector<Command> commands;
    commands.reserve(all.size());
    for (const auto& k : all) {
      commands.push_back(store::Store::invalidate(k));
    }
    std::vector<Reply> replies;
    try {
      replies = backend_.exchange({}, commands);
    } catch (...) {
      nearEvict(all); // the deletes may have happened
      throw;
    }
    nearEvict(all);
    for (const auto& k : all) {
      state_->flights.forget(k.value); // later calls must not join a load from before
    }
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].isError()) {
        backend_.count(Counter::redisErrors);
        throw ReplyError("cacheaside: invalidate of '" + detail::printableKey(all[i].value) +
                         "' failed: " + replies[i].str);
      }
    }
  }

  template <typename Range> void invalidateTagRange(const Range& tags) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::vector<std::string> keys, generations;
    for (const auto& tag : tags) {
      keys.push_back(store::tagKey(options_.keyNamespace, std::string_view(tag)));
      std::string generation; // random: a generation key lost to eviction never comes back
      for (int word = 0; word < 2; ++word) {
        std::uint64_t bits = detail::ThreadRandom::local().next();
        for (int i = 0; i < 16; ++i, bits >>= 4) {
          generation.push_back(kHex[bits & 0xF]);
        }
      }
      generations.push_back(std::move(generation));
    }
    if (keys.empty()) {
      return;
    }
    std::vector<Command> commands;
    commands.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      commands.push_back(store::Store::newGeneration(keys[i], generations[i]));
    }
    const std::vector<Reply> replies = backend_.exchange({}, commands);
    state_->flights.forgetAll(); // later calls must not join a load from before
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].isError()) {
        backend_.count(Counter::redisErrors);
        throw ReplyError("cacheaside: invalidateTag of '" + detail::printableKey(keys[i]) +
                         "' failed: " + replies[i].str);
      }
    }
  }

  const CacheOptions options_;
  const store::Store store_;
  const Codec<T, S> codec_;
  detail::Backend backend_;
  detail::Runner<T, S> runner_;
  detail::BatchRunner<T, S> batches_;
  // Its renewer thread uses the backend: destroyed first.
  std::unique_ptr<State> state_;
  // Detaches from its feed first (declared after what its callbacks do not use).
  std::unique_ptr<near::NearTier<T>> near_;
  ForkHook forkHook_;
  detail::ForkRegistry::Registration forkRegistration_;
};

} // namespace cacheaside
