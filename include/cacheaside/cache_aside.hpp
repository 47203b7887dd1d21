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
#include <cacheaside/detail/circuit_breaker.hpp>
#include <cacheaside/detail/fork.hpp>
#include <cacheaside/detail/lease_renewer.hpp>
#include <cacheaside/detail/random.hpp>
#include <cacheaside/detail/single_flight.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/flow/get_flow.hpp>
#include <cacheaside/flow/refresh_flow.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/stats.hpp>
#include <cacheaside/store/store.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace cacheaside {

/// How getOrLoad obtained the value it returned.
enum class Outcome {
  Hit,       ///< a fresh value (or a cached "not found") from Redis
  Stale,     ///< a stale value: another caller refreshes it, or its refresh failed (fail-safe)
  Loaded,    ///< this call ran the loader
  Coalesced, ///< this call joined a call for the same key in flight in this instance
};

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
/// background thread, started on its first load, that renews the leases of loads in flight. A
/// forked child starts with no calls, leases or renewals of its parent's.
///
/// \tparam T the cached type; copyable.
/// \tparam S the serializer (see codec/serializer.hpp); JSON by default, raw bytes for
/// std::string.
template <typename T, typename S = Serializer<T>> class CacheAside : detail::ForkAware {
public:
  /// The cached type.
  using value_type = T;
  /// The serializer.
  using serializer_type = S;

  /// Builds a cache over client (borrowed; it must outlive the cache). Throws
  /// std::invalid_argument when options.validate() does.
  explicit CacheAside(RedisClient& client, CacheOptions options = {})
      : client_(client), options_((options.validate(), std::move(options))),
        store_(options_.lockTtl),
        codec_(CodecOptions{options_.maxValueBytes, options_.compressor, options_.compressAbove}),
        breaker_(options_.breakerThreshold, options_.breakerCooldown), state_(newState()),
        forkRegistration_(*this) {}

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
    auto load = [&loader]() -> std::optional<T> {
      if constexpr (kMaybe) {
        return std::invoke(loader);
      } else {
        return std::optional<T>(std::invoke(loader));
      }
    };
    bool joined = false;
    Found found = state_->flights.run(
        keys.value, [&] { return fetch(key, keys, settings, load); },
        [&] {
          joined = true;
          counters_.bump(Counter::coalesced);
        });
    std::optional<T> result = std::move(found.value);
    Outcome how = joined ? Outcome::Coalesced : found.outcome;
    if (found.refresh != flow::Refresh::None) {
      // Only the caller that looked refreshes: the ones coalesced onto it take what it found.
      result = joined ? serveCurrent(key, std::move(result), found.refresh, how)
                      : refresh(key, keys, settings, load, std::move(result), found, how);
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

  /// The cached value for key, without loading: std::nullopt when there is none, when it is
  /// being loaded, when it is a cached "not found", when it cannot be decoded, and when Redis
  /// fails or the breaker is open (counted in stats()). A stale value is returned as it is.
  /// Throws std::invalid_argument for an empty key.
  std::optional<T> get(std::string_view key) {
    const store::Keys keys = store::keysFor(options_.keyNamespace, key);
    if (!breaker_.allow(now())) {
      counters_.bump(Counter::breakerBypasses);
      return std::nullopt;
    }
    try {
      const std::vector<Reply> replies = exchange(key, {store_.get(keys)});
      const store::Lookup found = store::Store::parseGet(replies.front());
      if (found.kind != store::Lookup::Kind::Record) {
        if (found.kind != store::Lookup::Kind::Empty) {
          counters_.bump(Counter::redisErrors);
        }
        return std::nullopt;
      }
      const auto env = codec::inspect(found.bytes);
      if (!env) {
        decodeFailed(key, "not a cacheaside record");
        return std::nullopt;
      }
      return env->kind == EntryKind::Value ? decodeValue(key, *env) : std::nullopt;
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
      counters_.bump(Counter::encodeFailures);
      throw Error("cacheaside: cannot serialize the value for key '" + detail::printableKey(key) +
                  "': " + error);
    case codec::Encoded::TooLarge:
      counters_.bump(Counter::oversizedValues);
      return false;
    case codec::Encoded::Ok:
      break;
    }
    if (!breaker_.allow(now())) {
      counters_.bump(Counter::breakerBypasses);
      return false;
    }
    const std::string ms = std::to_string(
        (ttl ? *ttl : flow::jittered(options_.ttl, options_.ttlJitter, draw()) + stale).count());
    std::vector<Command> commands;
    store::Store::set(keys, record, ms, commands);
    try {
      const std::vector<Reply> replies = exchange(key, commands);
      state_->flights.forget(keys.value); // later calls must not join a load from before
      if (replies.at(0).isError() || replies.at(1).isError()) {
        counters_.bump(Counter::redisErrors);
        return false;
      }
      return true;
    } catch (const ConnectionError&) {
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

  /// The counters so far; safe to call from any thread at any time.
  Stats stats() const noexcept { return counters_.snapshot(); }

  /// The options the cache was built with.
  const CacheOptions& options() const noexcept { return options_; }

  /// How many keys have a getOrLoad in flight in this instance now (0 when idle).
  std::size_t inFlight() const { return state_->flights.inFlight(); }

  /// Whether the circuit breaker currently bypasses Redis.
  bool breakerOpen() const { return breaker_.isOpen(); }

private:
  using Clock = std::chrono::steady_clock;
  using Micros = std::chrono::microseconds;

  // What one look (shared by coalesced callers) found.
  struct Found {
    std::optional<T> value;
    flow::Refresh refresh = flow::Refresh::None;
    long long pttl = -1; // the value's remaining TTL when read (when it was asked for)
    Outcome outcome = Outcome::Hit;
  };

  // What a forked child must not inherit: the calls in flight and the lease renewals.
  struct State {
    detail::SingleFlight<Found> flights;
    detail::LeaseRenewer renewer;
    explicit State(CacheAside& cache)
        : renewer(
              [&cache](const std::vector<detail::LeaseJob>& jobs) {
                return cache.sendLeaseJobs(jobs);
              },
              std::max(cache.options_.lockTtl / 3, std::chrono::milliseconds(1)),
              cache.options_.lockTtl) {}
  };

  // Counts and events of one call's flows.
  class CallSink final : public flow::Sink {
  public:
    CallSink(CacheAside& cache, std::string_view key) : cache_(cache), key_(key) {}
    void count(Counter c) noexcept override { cache_.counters_.bump(c); }
    void event(EventType type, std::string_view detail) noexcept override {
      cache_.emit(type, key_, Micros(0), detail);
    }

  private:
    CacheAside& cache_;
    std::string_view key_;
  };

  std::unique_ptr<State> newState() { return std::make_unique<State>(*this); }

  void forkedChild() noexcept override {
    (void)state_.release(); // its locks and thread belong to the parent: leak, never touch
    try {
      state_ = newState();
    } catch (...) {
      std::terminate(); // a child that cannot allocate a few hundred bytes cannot go on
    }
  }

  flow::Settings settingsFor(const CallOptions& call) const {
    flow::Settings s;
    s.entry = call.applyTo(options_.entry());
    s.ttlJitter = options_.ttlJitter;
    s.xfetchBeta = options_.xfetchBeta;
    s.pollInitial = options_.pollInitial;
    s.pollMax = options_.pollMax;
    s.failSafeThrottle = options_.failSafeThrottle;
    return s;
  }

  Clock::time_point now() const { return options_.clock ? options_.clock() : Clock::now(); }

  Micros since(Clock::time_point start) const {
    return std::chrono::duration_cast<Micros>(now() - start);
  }

  static double draw() { return detail::ThreadRandom::local().unitOpenClosed(); }

  template <typename Load>
  Found fetch(std::string_view key, const store::Keys& keys, const flow::Settings& settings,
              Load& load) {
    const auto started = now();
    Found found;
    if (!breaker_.allow(started)) {
      counters_.bump(Counter::breakerBypasses);
      counters_.bump(Counter::loads);
      found.value = load();
      found.outcome = Outcome::Loaded;
      return found;
    }
    CallSink sink(*this, key);
    flow::GetFlow flow(store_, keys, settings, sink);
    std::exception_ptr thrown;
    drive(key, flow, flow.start(), load, settings, found.value, thrown);
    if (const auto left = flow.leftBehind()) {
      releaseLater(*left);
    }
    using Result = flow::GetFlow::Result;
    switch (flow.result()) {
    case Result::Hit:
      found.refresh = flow.refresh();
      found.pttl = flow.pttl();
      emitSince(EventType::Hit, key, started);
      return found;
    case Result::Negative:
      found.value.reset();
      emitSince(EventType::Hit, key, started);
      return found;
    case Result::LoaderThrew:
      std::rethrow_exception(thrown);
    case Result::GaveUp:
      throw LockTimeoutError(
          "cacheaside: gave up after " + std::to_string(settings.entry.waitBudget.count()) +
          " ms waiting for another caller to load key '" + detail::printableKey(key) + "'");
    case Result::Loaded:
    case Result::LoadedUncached:
      break;
    }
    found.outcome = Outcome::Loaded;
    emitSince(EventType::Miss, key, started);
    return found;
  }

  // The caller holding no lease for a value it found stale or about to expire: take the refresh
  // lease, reload, and write back; or, if someone else refreshes, return what was found.
  template <typename Load>
  std::optional<T> refresh(std::string_view key, const store::Keys& keys,
                           const flow::Settings& settings, Load& load, std::optional<T> current,
                           const Found& found, Outcome& how) {
    CallSink sink(*this, key);
    flow::RefreshFlow flow(store_, keys, settings, sink, found.pttl);
    std::optional<T> fresh;
    std::exception_ptr thrown;
    const auto started = now();
    drive(key, flow, flow.start(), load, settings, fresh, thrown);
    if (const auto left = flow.leftBehind()) {
      releaseLater(*left);
    }
    switch (flow.result()) {
    case flow::RefreshFlow::Result::Fresh:
      emit(EventType::Refresh, key, since(started),
           found.refresh == flow::Refresh::Stale ? "stale" : "early");
      how = Outcome::Loaded;
      return fresh;
    case flow::RefreshFlow::Result::FailSafe:
      emit(EventType::FailSafe, key, Micros(0), describe(thrown));
      break;
    case flow::RefreshFlow::Result::ServeCurrent:
      break;
    }
    return serveCurrent(key, std::move(current), found.refresh, how);
  }

  // Performs a flow's actions until it is done. The loader's value lands in value; what it
  // threw in thrown.
  template <typename Flow, typename Load>
  void drive(std::string_view key, Flow& flow, flow::Action a, Load& load,
             const flow::Settings& settings, std::optional<T>& value, std::exception_ptr& thrown) {
    using Kind = flow::Action::Kind;
    while (a.kind != Kind::Done) {
      switch (a.kind) {
      case Kind::Send:
        try {
          a = flow.onReplies(exchange(key, *a.commands), now());
        } catch (const ConnectionError&) {
          a = flow.onTransportError();
        }
        break;
      case Kind::Sleep:
        std::this_thread::sleep_for(a.pause);
        a = onSlept(flow);
        break;
      case Kind::Decode:
        value = decodeValue(key, *a.record);
        a = onDecoded(flow, value.has_value());
        break;
      case Kind::Load:
        a = flow.onLoaded(runLoad(a, load, settings, value, thrown), draw());
        break;
      case Kind::Done:
        break;
      }
    }
  }

  // Only the get flow waits and decodes.
  static flow::Action onSlept(flow::GetFlow& flow) { return flow.onSlept(); }
  static flow::Action onSlept(flow::RefreshFlow&) { return flow::Action{}; }
  static flow::Action onDecoded(flow::GetFlow& flow, bool ok) { return flow.onDecoded(ok, draw()); }
  static flow::Action onDecoded(flow::RefreshFlow&, bool) { return flow::Action{}; }

  template <typename Load>
  flow::Loaded runLoad(const flow::Action& a, Load& load, const flow::Settings& settings,
                       std::optional<T>& value, std::exception_ptr& thrown) {
    flow::Loaded out;
    const auto started = now();
    counters_.bump(Counter::loads);
    {
      std::optional<detail::LeaseRenewer::Registration> renewal;
      if (!a.renew.key.empty()) {
        renewal.emplace(state_->renewer, state_->renewer.add(std::string(a.renew.key),
                                                             std::string(a.renew.keepAlive),
                                                             std::string(a.renew.token)));
      }
      try {
        value = load();
      } catch (...) {
        thrown = std::current_exception();
        out.kind = flow::Loaded::Kind::Threw;
        return out;
      }
    }
    out.took = since(started);
    if (!value) {
      out.kind = flow::Loaded::Kind::Negative;
      return out;
    }
    if (!a.encode) {
      return out;
    }
    std::string error;
    switch (codec_.encode(*value, flow::loadMillis(out.took),
                          static_cast<std::uint32_t>(settings.entry.staleWindow.count()),
                          out.record, error)) {
    case codec::Encoded::Ok:
      break;
    case codec::Encoded::Failed:
      counters_.bump(Counter::encodeFailures);
      out.kind = flow::Loaded::Kind::NotCacheable;
      break;
    case codec::Encoded::TooLarge:
      counters_.bump(Counter::oversizedValues);
      out.kind = flow::Loaded::Kind::NotCacheable;
      break;
    }
    return out;
  }

  std::optional<T> serveCurrent(std::string_view key, std::optional<T> current, flow::Refresh why,
                                Outcome& how) {
    if (why == flow::Refresh::Stale) {
      counters_.bump(Counter::staleServed);
      emit(EventType::StaleServed, key);
      if (how != Outcome::Coalesced) {
        how = Outcome::Stale;
      }
    }
    return current;
  }

  void releaseLater(const flow::LeaseRef& lease) {
    counters_.bump(Counter::orphanedLeases);
    state_->renewer.releaseLater(std::string(lease.key), std::string(lease.token));
  }

  // The renewer's batch: renewals and releases in one round trip.
  std::vector<bool> sendLeaseJobs(const std::vector<detail::LeaseJob>& jobs) noexcept {
    std::vector<bool> finished(jobs.size(), false);
    try {
      std::vector<Command> commands;
      commands.reserve(jobs.size());
      for (const auto& job : jobs) {
        commands.push_back(job.release ? store::Store::release(job.key, job.token)
                                       : store_.renew(job.key, job.keepAlive, job.token));
      }
      const std::vector<Reply> replies = exchange({}, commands);
      for (std::size_t i = 0; i < jobs.size() && i < replies.size(); ++i) {
        finished[i] = jobs[i].release && store::Store::parseWrite(replies[i]) == store::Write::Done;
      }
    } catch (...) {
      // Counted by exchange() when Redis failed; the next tick tries again.
    }
    return finished;
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
    const std::vector<Reply> replies = exchange({}, commands);
    for (const auto& k : all) {
      state_->flights.forget(k.value); // later calls must not join a load from before
    }
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].isError()) {
        counters_.bump(Counter::redisErrors);
        throw ReplyError("cacheaside: invalidate of '" + detail::printableKey(all[i].value) +
                         "' failed: " + replies[i].str);
      }
    }
  }

  // Sends commands (one round trip; one more for scripts the server had not cached) through the
  // failure funnel.
  std::vector<Reply> exchange(std::string_view key, const std::vector<Command>& commands) {
    std::vector<Reply> replies = redis(key, [&] {
      return commands.size() == 1 ? std::vector<Reply>{client_.command(commands.front())}
                                  : client_.pipeline(commands);
    });
    std::vector<Command> retry;
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < replies.size() && i < commands.size(); ++i) {
      if (replies[i].isError()) {
        Command command = commands[i];
        if (store::Store::fallBackToEval(replies[i], command)) {
          retry.push_back(std::move(command));
          at.push_back(i);
        }
      }
    }
    if (!retry.empty()) {
      std::vector<Reply> again = redis(key, [&] { return client_.pipeline(retry); });
      for (std::size_t j = 0; j < at.size() && j < again.size(); ++j) {
        replies[at[j]] = std::move(again[j]);
      }
    }
    return replies;
  }

  // Every Redis call goes through here: transport failures are counted, reported and fed to the
  // circuit breaker (then rethrown); successes close it. A client out of connections is a local
  // condition: counted apart, never held against Redis.
  template <typename Call> auto redis(std::string_view key, Call&& call) -> decltype(call()) {
    const auto started = now();
    try {
      auto reply = call();
      if (breaker_.onSuccess() == detail::CircuitBreaker::Change::Closed) {
        emit(EventType::BreakerClose, {});
      }
      return reply;
    } catch (const PoolExhaustedError&) {
      counters_.bump(Counter::poolExhausted);
      throw;
    } catch (const ConnectionError& e) {
      counters_.bump(Counter::redisErrors);
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

  static std::string describe(const std::exception_ptr& thrown) {
    try {
      std::rethrow_exception(thrown);
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "non-standard exception";
    }
  }

  void decodeFailed(std::string_view key, std::string_view why) {
    counters_.bump(Counter::decodeFailures);
    emit(EventType::DecodeFailure, key, Micros(0), why);
  }

  std::optional<T> decodeValue(std::string_view key, const Envelope& env) {
    std::string error;
    std::optional<T> value = codec_.decode(env, error);
    if (!value) {
      decodeFailed(key, error);
    }
    return value;
  }

  RedisClient& client_;
  const CacheOptions options_;
  const store::Store store_;
  const Codec<T, S> codec_;
  detail::CircuitBreaker breaker_;
  detail::AtomicStats counters_;
  // Its renewer thread calls sendLeaseJobs(), which uses the members above: destroyed first.
  std::unique_ptr<State> state_;
  detail::ForkRegistry::Registration forkRegistration_;
};

} // namespace cacheaside
