#pragma once
/// \file flow/refresh_flow.hpp
/// Reloading a value that is still served (stale, or due for an XFetch early refresh), as a
/// step machine with no I/O: take the refresh lease (which also keeps the value alive while it
/// reloads), load, write back through the lease; if the loader throws, turn the lease into a
/// fail-safe throttle marker so that no caller in any process retries for failSafeThrottle.

#include <cacheaside/codec/record.hpp>
#include <cacheaside/flow/freshness.hpp>
#include <cacheaside/flow/step.hpp>
#include <cacheaside/flow/tags.hpp>
#include <cacheaside/store/store.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cacheaside::flow {

/// One refresh of one key. Not thread-safe: one caller drives it.
class RefreshFlow {
public:
  /// How the refresh ended.
  enum class Result {
    ServeCurrent, ///< someone else refreshes, or the value changed, or Redis failed: serve
                  ///< what was read
    FailSafe,     ///< the loader threw: serve what was read
    Fresh,        ///< the loader ran: serve what it returned
  };

  /// A refresh of keys' value, read with seenPttl ms left to live and with the expiry stamp
  /// seenExpiresAt (0: none; the stamp, when there is one, tells whether someone else refreshed
  /// meanwhile). generations: the tag generations read with the value (see flow/tags.hpp),
  /// stamped into the refreshed record; may be null when the call has no tags. The references
  /// must outlive the flow.
  RefreshFlow(const store::Store& store, const store::Keys& keys, const Settings& settings,
              Sink& sink, long long seenPttl, std::uint64_t seenExpiresAt = 0,
              const std::vector<std::string>* generations = nullptr)
      : store_(store), keys_(keys), settings_(settings), sink_(sink), token_(codec::leaseRecord()),
        seen_(seenExpiresAt != 0 ? stampBytes(seenExpiresAt) : std::to_string(seenPttl)),
        seenIsStamp_(seenExpiresAt != 0), generations_(generations) {}

  RefreshFlow(const RefreshFlow&) = delete;
  RefreshFlow& operator=(const RefreshFlow&) = delete;

  /// The first step: take the refresh lease.
  Action start() {
    return send(State::Taking, store_.takeRefresh(keys_, token_, seen_, seenIsStamp_));
  }

  /// Resumes with the replies to the last Send (the time is GetFlow's business only).
  Action onReplies(std::vector<Reply> replies, Clock::time_point /*now*/) {
    const Reply& reply = replies.front();
    switch (state_) {
    case State::Taking:
      switch (store::Store::parseTakeRefresh(reply)) {
      case store::RefreshLease::Won: {
        state_ = State::Loading;
        Action a = Action::of(Action::Kind::Load);
        a.encode = true;
        a.renew = LeaseRef{keys_.refreshLease, keys_.value, token_};
        return a;
      }
      case store::RefreshLease::Failed:
        sink_.count(Counter::redisErrors);
        return done(Result::ServeCurrent);
      default:
        return done(Result::ServeCurrent);
      }
    case State::Filling:
      switch (store::Store::parseWrite(reply)) {
      case store::Write::Done:
        return done(result_);
      case store::Write::Fenced:
        sink_.count(Counter::fencedWrites);
        return done(result_);
      case store::Write::Failed:
        break;
      }
      sink_.count(Counter::redisErrors);
      return send(State::Releasing, store::Store::release(keys_.refreshLease, token_));
    default:
      if (store::Store::parseWrite(reply) == store::Write::Failed) {
        sink_.count(Counter::redisErrors);
        leftBehind_ = true;
      }
      return done(result_);
    }
  }

  /// Resumes after the last Send failed in transport.
  Action onTransportError() {
    leftBehind_ = true; // the lease may be held (or written back) by commands that did run
    return done(state_ == State::Taking ? Result::ServeCurrent : result_);
  }

  /// Resumes after the Load. u is a uniform draw in (0, 1] for the TTL's jitter.
  Action onLoaded(Loaded loaded, double u) {
    switch (loaded.kind) {
    case Loaded::Kind::Threw:
      result_ = Result::FailSafe;
      sink_.count(Counter::failSafes);
      ms_ = std::to_string(settings_.failSafeThrottle.count());
      throttle_ = codec::leaseRecord();
      return send(State::Marking, store::Store::fill(keys_.refreshLease, token_, throttle_, ms_));
    case Loaded::Kind::NotCacheable:
      result_ = Result::Fresh;
      sink_.count(Counter::refreshes);
      return send(State::Releasing, store::Store::release(keys_.refreshLease, token_));
    case Loaded::Kind::Negative:
      record_ = codec::negativeRecord(loadMillis(loaded.took));
      ms_ = std::to_string(jittered(settings_.entry.negativeTtl, settings_.ttlJitter, u).count());
      break;
    case Loaded::Kind::Value:
      record_ = std::move(loaded.record);
      ms_ = std::to_string(
          (jittered(settings_.entry.ttl, settings_.ttlJitter, u) + settings_.entry.staleWindow)
              .count());
      break;
    }
    if (generations_ != nullptr && !settings_.tags.empty()) {
      stampGenerations(record_, settings_, *generations_);
    }
    result_ = Result::Fresh;
    sink_.count(Counter::refreshes);
    return send(State::Filling, store::Store::refreshFill(keys_, token_, record_, ms_));
  }

  /// Done: how the refresh ended.
  Result result() const noexcept { return result_; }

  /// Done: a lease a Redis failure may have left behind, for the driver to release later.
  std::optional<LeaseRef> leftBehind() const noexcept {
    if (!leftBehind_) {
      return std::nullopt;
    }
    return LeaseRef{keys_.refreshLease, {}, token_};
  }

private:
  enum class State { Idle, Taking, Loading, Filling, Marking, Releasing, Done };

  static std::string stampBytes(std::uint64_t expiresAt) {
    std::string out(envelope::kExpiryStampSize, '\0');
    for (std::size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<char>((expiresAt >> (8 * i)) & 0xFF);
    }
    return out;
  }

  Action send(State next, Command command) {
    state_ = next;
    commands_.clear();
    commands_.push_back(std::move(command));
    Action a = Action::of(Action::Kind::Send);
    a.commands = &commands_;
    return a;
  }

  Action done(Result result) {
    result_ = result;
    state_ = State::Done;
    return Action::of(Action::Kind::Done);
  }

  const store::Store& store_;
  const store::Keys& keys_;
  const Settings& settings_;
  Sink& sink_;
  const std::string token_;
  const std::string seen_;
  const bool seenIsStamp_;
  State state_ = State::Idle;
  std::vector<Command> commands_;
  std::string record_, throttle_, ms_;
  const std::vector<std::string>* generations_;
  Result result_ = Result::ServeCurrent;
  bool leftBehind_ = false;
};

} // namespace cacheaside::flow
