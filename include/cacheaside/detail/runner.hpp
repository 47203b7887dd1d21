#pragma once
// Runs the get-or-load flows against Redis for CacheAside<T, S>: performs their actions (send,
// sleep, decode, load), encodes what loaders return, and hands leases that Redis failures left
// behind to the renewer.

#include <cacheaside/codec/record.hpp>
#include <cacheaside/detail/backend.hpp>
#include <cacheaside/detail/lease_renewer.hpp>
#include <cacheaside/detail/random.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/flow/get_flow.hpp>
#include <cacheaside/flow/refresh_flow.hpp>
#include <cacheaside/near/tier.hpp>
#include <cacheaside/store/store.hpp>

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cacheaside::detail {

template <typename T, typename S> class Runner {
public:
  // What one look (shared by coalesced callers) found.
  struct Found {
    std::optional<T> value;
    flow::Refresh refresh = flow::Refresh::None;
    long long pttl = -1;         // the value's remaining TTL when read (when it was asked for)
    std::uint64_t expiresAt = 0; // the record's expiry stamp (server clock), 0 without one
    Outcome outcome = Outcome::Hit;
    // Loaded under a lease but not written back (fenced by an invalidation, not cacheable, or
    // Redis failed): the value may predate an invalidation.
    bool unconfirmed = false;
    std::vector<std::string> generations; // tags read with a value to refresh
    std::size_t bytes = 0;                // Hit: the record's payload size
    std::uint32_t staleMillis = 0;        // Hit: the record's stale window
    std::uint32_t loadMillis = 0;         // Hit: how long its load took
  };

  // The references must outlive the runner.
  Runner(Backend& backend, const store::Store& store, const Codec<T, S>& codec)
      : backend_(backend), store_(store), codec_(codec) {}

  // gate (open()/hold()/close()) is told when callers that start now may share what this call
  // finds: while it waits for another caller's load or runs its own under a lease, not while it
  // reads, since a read may predate them (an invalidation between the read and their start). A
  // load that bypasses Redis is not shared either: nothing would tell it was overtaken by a
  // write. During its first read (which ends most calls: a hit) later callers run on their own;
  // during later ones (the key was missing) they are held back to join what follows.
  template <typename Load, typename Gate>
  Found fetch(std::string_view key, const store::Keys& keys, const flow::Settings& settings,
              Load& load, LeaseRenewer& renewer, Gate& gate) {
    const auto started = backend_.now();
    Found found;
    if (!backend_.allow()) {
      backend_.count(Counter::loads);
      found.value = load();
      found.outcome = Outcome::Loaded;
      return found;
    }
    Backend::CallSink sink(backend_, key);
    flow::GetFlow flow(store_, keys, settings, sink);
    std::exception_ptr thrown;
    const bool merged =
        drive(key, flow, flow.start(), load, settings, found.value, thrown, renewer, gate);
    if (const auto left = flow.leftBehind()) {
      releaseLater(*left, renewer);
    }
    if (merged) {
      return found; // the caller takes the result of the call it merged into
    }
    using Result = flow::GetFlow::Result;
    switch (flow.result()) {
    case Result::Hit:
      found.refresh = flow.refresh();
      found.pttl = flow.pttl();
      found.expiresAt = flow.expiresAt();
      if (found.refresh != flow::Refresh::None && !settings.tags.empty()) {
        found.generations = flow.generations();
      }
      found.bytes = flow.record().payload.size();
      found.staleMillis = flow.record().staleMillis;
      found.loadMillis = flow.record().loadMillis;
      backend_.emitSince(EventType::Hit, key, started);
      return found;
    case Result::Negative:
      found.value.reset();
      backend_.emitSince(EventType::Hit, key, started);
      return found;
    case Result::LoaderThrew:
      std::rethrow_exception(thrown);
    case Result::GaveUp:
      throw LockTimeoutError(
          "cacheaside: gave up after " + std::to_string(settings.entry.waitBudget.count()) +
          " ms waiting for another caller to load key '" + printableKey(key) + "'");
    case Result::Loaded:
    case Result::LoadedUncached:
      break;
    }
    found.outcome = Outcome::Loaded;
    found.unconfirmed = flow.result() == flow::GetFlow::Result::Loaded && !flow.written();
    backend_.emitSince(EventType::Miss, key, started);
    return found;
  }

  // The caller holding no lease for a value it found stale or about to expire: take the refresh
  // lease, reload, and write back; or, if someone else refreshes, return what was found.
  template <typename Load>
  std::optional<T> refresh(std::string_view key, const store::Keys& keys,
                           const flow::Settings& settings, Load& load, std::optional<T> current,
                           const Found& found, Outcome& how, LeaseRenewer& renewer) {
    Backend::CallSink sink(backend_, key);
    flow::RefreshFlow flow(store_, keys, settings, sink, found.pttl, found.expiresAt,
                           &found.generations);
    std::optional<T> fresh;
    std::exception_ptr thrown;
    const auto started = backend_.now();
    NoGate none;
    drive(key, flow, flow.start(), load, settings, fresh, thrown, renewer, none);
    if (const auto left = flow.leftBehind()) {
      releaseLater(*left, renewer);
    }
    switch (flow.result()) {
    case flow::RefreshFlow::Result::Fresh:
      backend_.emit(EventType::Refresh, key, backend_.since(started),
                    found.refresh == flow::Refresh::Stale ? "stale" : "early");
      how = Outcome::Loaded;
      return fresh;
    case flow::RefreshFlow::Result::FailSafe:
      backend_.emit(EventType::FailSafe, key, Backend::Micros(0), describe(thrown));
      break;
    case flow::RefreshFlow::Result::ServeCurrent:
      break;
    }
    return serveCurrent(key, std::move(current), found.refresh, how);
  }

  // A call no one can join.
  struct NoGate {
    void open() {}
    void close() {}
    void hold() {}
    bool merge() { return false; }
  };

  // Performs a flow's actions until it is done. The loader's value lands in value; what it
  // threw in thrown. Returns true when the call merged into another call of the key
  // (gate.merge()) instead of waiting on its own.
  template <typename Flow, typename Load, typename Gate>
  bool drive(std::string_view key, Flow& flow, flow::Action a, Load& load,
             const flow::Settings& settings, std::optional<T>& value, std::exception_ptr& thrown,
             LeaseRenewer& renewer, Gate& gate) {
    using Kind = flow::Action::Kind;
    enum class Join { Closed, Open, Held };
    Join state = Join::Closed; // as a call starts
    bool looked = false;
    auto joinable = [&](Join want) {
      if (want != state) {
        state = want;
        want == Join::Open ? gate.open() : want == Join::Held ? gate.hold() : gate.close();
      }
    };
    std::uint64_t mark = 0; // the key's invalidations before the last look, when near_ is set
    while (a.kind != Kind::Done) {
      // A wait another call of the key already waits for: share it, and the reads after it.
      if (a.kind == Kind::Sleep && gate.merge()) {
        return true;
      }
      // Joiners may share a wait (the next read follows them) or a load under a lease (if its
      // value is not written back, which an invalidation would prevent, they look again), but
      // not a read, a fill or a load without a lease, which may predate them unnoticed. After
      // the first read they are held back during reads and fills, to join what follows.
      if (a.kind == Kind::Sleep || (a.kind == Kind::Load && a.encode)) {
        joinable(Join::Open);
      } else if (a.kind == Kind::Send && looked) {
        joinable(Join::Held);
      } else {
        joinable(Join::Closed);
      }
      looked = looked || a.kind == Kind::Send;
      switch (a.kind) {
      case Kind::Send:
        if (near_ != nullptr) {
          mark = near_->mark(key);
        }
        try {
          a = flow.onReplies(backend_.exchange(key, *a.commands), backend_.now());
        } catch (const ConnectionError&) {
          a = flow.onTransportError();
        }
        break;
      case Kind::Sleep:
        if (near_ != nullptr) {
          near_->wait(key, mark, a.pause); // woken early by the fill's invalidation
        } else {
          std::this_thread::sleep_for(a.pause);
        }
        a = onSlept(flow);
        break;
      case Kind::Decode:
        value = decodeValue(key, *a.record);
        a = onDecoded(flow, value.has_value());
        break;
      case Kind::Load:
        a = flow.onLoaded(runLoad(a, load, settings, value, thrown, renewer), draw());
        break;
      case Kind::Done:
        break;
      }
    }
    return false;
  }

  // Only the get flow waits and decodes.
  static flow::Action onSlept(flow::GetFlow& flow) { return flow.onSlept(); }
  static flow::Action onSlept(flow::RefreshFlow&) { return flow::Action{}; }
  static flow::Action onDecoded(flow::GetFlow& flow, bool ok) { return flow.onDecoded(ok, draw()); }
  static flow::Action onDecoded(flow::RefreshFlow&, bool) { return flow::Action{}; }

  template <typename Load>
  flow::Loaded runLoad(const flow::Action& a, Load& load, const flow::Settings& settings,
                       std::optional<T>& value, std::exception_ptr& thrown, LeaseRenewer& renewer) {
    flow::Loaded out;
    const auto started = backend_.now();
    backend_.count(Counter::loads);
    {
      std::optional<LeaseRenewer::Registration> renewal;
      if (!a.renew.key.empty()) {
        renewal.emplace(renewer,
                        renewer.add(std::string(a.renew.key), std::string(a.renew.keepAlive),
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
    out.took = backend_.since(started);
    if (!value) {
      out.kind = flow::Loaded::Kind::Negative;
      return out;
    }
    if (a.encode) {
      encode(*value, out, settings);
    }
    return out;
  }

  // Encodes a loaded value into loaded.record, or marks it NotCacheable (counted).
  void encode(const T& value, flow::Loaded& loaded, const flow::Settings& settings) {
    std::string error;
    switch (codec_.encode(value, flow::loadMillis(loaded.took),
                          static_cast<std::uint32_t>(settings.entry.staleWindow.count()),
                          loaded.record, error)) {
    case codec::Encoded::Ok:
      break;
    case codec::Encoded::Failed:
      backend_.count(Counter::encodeFailures);
      loaded.kind = flow::Loaded::Kind::NotCacheable;
      break;
    case codec::Encoded::TooLarge:
      backend_.count(Counter::oversizedValues);
      loaded.kind = flow::Loaded::Kind::NotCacheable;
      break;
    }
  }

  std::optional<T> serveCurrent(std::string_view key, std::optional<T> current, flow::Refresh why,
                                Outcome& how) {
    if (why == flow::Refresh::Stale) {
      backend_.count(Counter::staleServed);
      backend_.emit(EventType::StaleServed, key);
      if (how != Outcome::Coalesced) {
        how = Outcome::Stale;
      }
    }
    return current;
  }

  void releaseLater(const flow::LeaseRef& lease, LeaseRenewer& renewer) {
    backend_.count(Counter::orphanedLeases);
    renewer.releaseLater(std::string(lease.key), std::string(lease.token));
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
    backend_.count(Counter::decodeFailures);
    backend_.emit(EventType::DecodeFailure, key, Backend::Micros(0), why);
  }

  std::optional<T> decodeValue(std::string_view key, const Envelope& env) {
    std::string error;
    std::optional<T> value = codec_.decode(env, error);
    if (!value) {
      decodeFailed(key, error);
    }
    return value;
  }

  // The near tier whose invalidations wake waiting callers (borrowed), or null.
  void setNear(near::NearTier<T>* tier) noexcept { near_ = tier; }

private:
  static double draw() { return ThreadRandom::local().unitOpenClosed(); }

  Backend& backend_;
  const store::Store& store_;
  const Codec<T, S>& codec_;
  near::NearTier<T>* near_ = nullptr;
};

} // namespace cacheaside::detail
