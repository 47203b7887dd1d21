#pragma once
/// \file flow/get_flow.hpp
/// The get-or-load decisions for one key, as a step machine with no I/O: look (taking the lease
/// when the key is empty, at once or after a plain GET found nothing), wait with growing pauses
/// while another caller loads, take over bytes that do not decode, read without leases from a Redis
/// that refuses writes, load, and write back through the lease (or give the lease up). The driver
/// performs each Action and resumes the flow with its outcome; unit tests do the same with scripted
/// replies.
///
/// Every path ends: waits by the wait budget, takeovers after kMaxTakeovers, a server's
/// "unsupported" answer after one retry with the scripted lookup.

#include <cacheaside/codec/record.hpp>
#include <cacheaside/detail/sha1.hpp>
#include <cacheaside/flow/freshness.hpp>
#include <cacheaside/flow/step.hpp>
#include <cacheaside/flow/tags.hpp>
#include <cacheaside/store/store.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cacheaside::flow {

/// Get-or-load for one key. Not thread-safe: one caller drives it.
class GetFlow {
public:
  /// How the flow ended.
  enum class Result {
    Hit,            ///< a value decoded (see refresh() and pttl())
    Negative,       ///< a cached "not found"
    Loaded,         ///< the loader ran under this caller's lease (written back, or fenced)
    LoadedUncached, ///< the loader ran without a lease (Redis failed, refused, or the wait ran
                    ///< out): nothing was written
    LoaderThrew,    ///< the loader threw (the lease was given up)
    GaveUp,         ///< the wait budget ran out under WaitTimeoutPolicy::Throw
  };

  /// Takeovers of undecodable bytes one call attempts before it loads without caching.
  static constexpr int kMaxTakeovers = 2;

  /// A flow for keys (its lease token is drawn when it first tries a lease). The references
  /// must outlive the flow.
  GetFlow(const store::Store& store, const store::Keys& keys, const Settings& settings, Sink& sink)
      : GetFlow(store, keys, settings, sink, {}) {}

  /// A flow for keys leasing with lease (a codec::leaseRecord(), borrowed: it must outlive the
  /// flow; empty: drawn when first needed), so that the flows of a batch, which lease distinct
  /// keys, share one token.
  GetFlow(const store::Store& store, const store::Keys& keys, const Settings& settings, Sink& sink,
          std::string_view lease)
      : store_(store), keys_(keys), settings_(settings), sink_(sink), lent_(lease),
        pause_(settings.pollInitial) {}

  GetFlow(const GetFlow&) = delete;
  GetFlow& operator=(const GetFlow&) = delete;

  /// The first step: the lookup.
  Action start() { return look(); }

  /// Resumes with the replies to the commands of the last Send.
  Action onReplies(std::vector<Reply> replies, Clock::time_point now) {
    replies_ = std::move(replies);
    switch (state_) {
    case State::Peeking: {
      const store::Lookup found = store_.parsePeek(replies_, now);
      if (found.kind == store::Lookup::Kind::Empty) {
        return sendLookup(); // nothing there: now take the lease
      }
      readGenerations(settings_, replies_, generations_, sink_);
      return onLookup(found, now, true);
    }
    case State::Looking:
      readGenerations(settings_, replies_, generations_, sink_);
      return onLookup(store_.parseLookup(replies_, now), now, true);
    case State::Timing:
      pttl_ = store::Store::parsePttl(replies_.front());
      return decode();
    case State::ReadOnly:
      readGenerations(settings_, replies_, generations_, sink_);
      return onLookup(store::Store::parseGet(replies_.front()), now, false);
    case State::TakingOver:
      return onLookup(store::Store::parseTakeover(replies_.front()), now, true);
    case State::Filling:
      if (!settings_.tags.empty()) {
        // A tag invalidated during the load: the record written reads as invalidated, and
        // the callers that joined this one must look again.
        std::vector<std::string> after;
        readGenerations(settings_, replies_, after, sink_);
        tagMoved_ = after != generations_;
      }
      return onFilled(store::Store::parseWrite(replies_.front()));
    case State::Releasing:
      if (store::Store::parseWrite(replies_.front()) == store::Write::Failed) {
        sink_.count(Counter::redisErrors);
        leftBehind_ = true;
      }
      return done(result_);
    default:
      return done(result_);
    }
  }

  /// Resumes after the last Send failed in transport (refused, reset, timed out): the commands
  /// may or may not have run.
  Action onTransportError() {
    switch (state_) {
    case State::Looking:
    case State::TakingOver:
      // The lease may have been taken before the reply was lost. Writing back through it
      // would cost a second timeout if Redis is still failing: load without caching, and
      // have the lease released by token once Redis answers again.
      leftBehind_ = true;
      countFirst(Counter::misses);
      return load(false);
    case State::Peeking: // no lease can have been taken
    case State::ReadOnly:
      countFirst(Counter::misses);
      return load(false);
    case State::Timing: // the value was read: serve it, its freshness unknown
      pttl_ = -1;
      return decode();
    case State::Filling:
    case State::Releasing:
      leftBehind_ = true;
      return done(result_);
    default:
      return done(result_);
    }
  }

  /// Resumes after a Sleep: looks again (which takes the lease if the holder is gone).
  Action onSlept() { return look(); }

  /// Resumes after a Decode: ok when the payload decoded into a T (kept by the driver). u is a
  /// uniform draw in (0, 1] for XFetch.
  Action onDecoded(bool ok, double u) {
    if (ok) {
      countFirst(Counter::hits);
      refresh_ =
          refreshReason(pttl_, record_.staleMillis, record_.loadMillis, settings_.xfetchBeta, u);
      return done(Result::Hit);
    }
    countFirst(Counter::misses);
    return takeOver(bytes_);
  }

  /// Resumes after a Load. u is a uniform draw in (0, 1] for the TTL's jitter.
  Action onLoaded(Loaded loaded, double u) {
    if (loaded.kind == Loaded::Kind::Threw || loaded.kind == Loaded::Kind::NotCacheable) {
      result_ = loaded.kind == Loaded::Kind::Threw
                    ? Result::LoaderThrew
                    : (holdsLease_ ? Result::Loaded : Result::LoadedUncached);
      return holdsLease_ ? sendRelease() : done(result_);
    }
    if (!holdsLease_) {
      return done(Result::LoadedUncached);
    }
    result_ = Result::Loaded;
    if (loaded.kind == Loaded::Kind::Negative) {
      record_bytes_ = codec::negativeRecord(loadMillis(loaded.took));
      ms_ = std::to_string(jittered(settings_.entry.negativeTtl, settings_.ttlJitter, u).count());
    } else {
      record_bytes_ = std::move(loaded.record);
      ms_ = std::to_string(
          (jittered(settings_.entry.ttl, settings_.ttlJitter, u) + settings_.entry.staleWindow)
              .count());
    }
    if (!settings_.tags.empty()) {
      stampGenerations(record_bytes_, settings_, generations_);
    }
    std::vector<Command> commands{store::Store::fill(keys_.value, token(), record_bytes_, ms_)};
    appendTagReads(settings_, commands); // reads the tags again, to see if one moved meanwhile
    return send(State::Filling, std::move(commands));
  }

  /// Done: how the flow ended.
  Result result() const noexcept { return result_; }
  /// Done with Hit: whether the value should be reloaded now.
  Refresh refresh() const noexcept { return refresh_; }
  /// Done with Hit: the key's remaining TTL when read (ms; -1 unknown), by the server's TTL or
  /// by the record's expiry stamp and the server's clock.
  long long pttl() const noexcept { return pttl_; }
  /// Done with Hit: the record's expiry stamp (ms since the Unix epoch, server clock); 0 when
  /// it had none.
  std::uint64_t expiresAt() const noexcept { return expiresAt_; }
  /// Done with Hit: the record read (its views live as long as the flow).
  const Envelope& record() const noexcept { return record_; }
  /// Done with Loaded: whether the write-back was refused because the key was invalidated (or
  /// overwritten) during the load: the value may predate a write.
  bool fenced() const noexcept { return fenced_; }
  /// Done with Loaded: whether the value was written back through the lease (so no
  /// invalidation overlapped the load, of the key or of one of the call's tags).
  bool written() const noexcept { return written_; }
  /// Done: a lease a Redis failure may have left behind, for the driver to release later.
  std::optional<LeaseRef> leftBehind() const noexcept {
    if (!leftBehind_) {
      return std::nullopt;
    }
    return LeaseRef{keys_.value, {}, token()};
  }
  /// The tag generations the last lookup read (empty without tags): a refresh stamps them.
  const std::vector<std::string>& generations() const noexcept { return generations_; }

private:
  enum class State {
    Idle,
    Peeking,
    Looking,
    Timing,
    ReadOnly,
    TakingOver,
    Waiting,
    Decoding,
    Loading,
    Filling,
    Releasing,
    Done
  };

  bool judgesFreshness() const noexcept {
    return settings_.readTtl &&
           (settings_.xfetchBeta > 0 || settings_.entry.staleWindow.count() > 0);
  }

  Action look() { return settings_.peekFirst ? sendPeek() : sendLookup(); }

  Action sendPeek() {
    std::vector<Command> commands;
    store_.peek(keys_, judgesFreshness(), commands);
    appendTagReads(settings_, commands);
    return send(State::Peeking, std::move(commands));
  }

  Action sendLookup() {
    std::vector<Command> commands;
    store_.lookup(keys_, lease(), judgesFreshness(), commands);
    appendTagReads(settings_, commands);
    return send(State::Looking, std::move(commands));
  }

  Action onLookup(const store::Lookup& found, Clock::time_point now, bool leasing) {
    switch (found.kind) {
    case store::Lookup::Kind::Empty:
      countFirst(Counter::misses);
      if (!leasing) {
        return load(false);
      }
      holdsLease_ = true;
      return load(true);
    case store::Lookup::Kind::Unsupported:
      if (!retriedScripted_ && store_.scriptedLookup()) {
        retriedScripted_ = true;
        return sendLookup();
      }
      sink_.count(Counter::redisErrors);
      countFirst(Counter::misses);
      return load(false);
    case store::Lookup::Kind::WriteRefused:
      sink_.count(Counter::redisErrors);
      if (state_ == State::Looking && first_ && !settings_.peekFirst) {
        // Redis refuses writes but may still read: serve hits with a plain GET rather than
        // load every request (a peek has just read the key empty).
        std::vector<Command> commands{store_.get(keys_)};
        appendTagReads(settings_, commands);
        return send(State::ReadOnly, std::move(commands));
      }
      countFirst(Counter::misses);
      return load(false);
    case store::Lookup::Kind::WrongType: // another program's data: left alone
    case store::Lookup::Kind::Error:
      sink_.count(Counter::redisErrors);
      countFirst(Counter::misses);
      return load(false);
    case store::Lookup::Kind::Record:
      break;
    }
    const auto env = codec::inspect(found.bytes);
    if (!env) {
      sink_.count(Counter::decodeFailures);
      sink_.event(EventType::DecodeFailure, "not a cacheaside record");
      countFirst(Counter::misses);
      return leasing ? takeOver(found.bytes) : load(false);
    }
    if (!settings_.tags.empty() && env->kind != EntryKind::Lease &&
        !carriesGenerations(*env, settings_, generations_)) {
      // Invalidated by a tag (or written without this call's tags): reload it.
      countFirst(Counter::misses);
      return leasing ? takeOver(found.bytes) : load(false);
    }
    switch (env->kind) {
    case EntryKind::Negative:
      countFirst(Counter::hits);
      return done(Result::Negative);
    case EntryKind::Lease:
      countFirst(Counter::misses);
      return leasing ? wait(now) : load(false);
    case EntryKind::Value:
      break;
    }
    record_ = *env;
    bytes_ = found.bytes;
    pttl_ = found.pttl;
    expiresAt_ = envelope::expiresAt(*env);
    if (pttl_ < 0 && judgesFreshness()) {
      const auto serverNow = store_.clock().serverNowMillis(now);
      if (expiresAt_ != 0 && serverNow) {
        const auto left = static_cast<long long>(expiresAt_) - *serverNow;
        pttl_ = std::max(left, 0LL);
      } else if (state_ == State::Looking || state_ == State::Peeking) {
        // A record of an earlier version (no stamp), or no clock sample yet: ask the server.
        // The replies hold the record's bytes: moving them keeps the views valid.
        looked_ = std::move(replies_);
        return send(State::Timing, {store::Store::pttl(keys_)});
      }
    }
    return decode();
  }

  Action decode() {
    state_ = State::Decoding;
    Action a = Action::of(Action::Kind::Decode);
    a.record = &record_;
    return a;
  }

  Action wait(Clock::time_point now) {
    if (!waited_) {
      waited_ = true;
      sink_.count(Counter::leaseWaits);
      deadline_ = now + settings_.entry.waitBudget;
    }
    if (now + pause_ > deadline_) {
      sink_.count(Counter::waitTimeouts);
      if (settings_.entry.onWaitTimeout == WaitTimeoutPolicy::Throw) {
        return done(Result::GaveUp);
      }
      return load(false);
    }
    state_ = State::Waiting;
    Action a = Action::of(Action::Kind::Sleep);
    a.pause = pause_;
    pause_ = std::min(pause_ * 2, settings_.pollMax);
    return a;
  }

  // Replaces bytes that do not decode with this caller's lease, so its fill replaces them.
  Action takeOver(std::string_view bytes) {
    if (++takeovers_ > kMaxTakeovers) {
      return load(false);
    }
    sha1_ = detail::sha1Hex(bytes);
    return send(State::TakingOver, {store_.takeover(keys_, sha1_, lease())});
  }

  Action load(bool encode) {
    state_ = State::Loading;
    Action a = Action::of(Action::Kind::Load);
    a.encode = encode;
    if (encode) {
      a.renew = LeaseRef{keys_.value, {}, token()};
    }
    return a;
  }

  Action onFilled(store::Write written) {
    switch (written) {
    case store::Write::Done:
      // Written, but stamped with a generation a tag has left behind: as good as fenced.
      written_ = !tagMoved_;
      return done(result_);
    case store::Write::Fenced:
      sink_.count(Counter::fencedWrites);
      fenced_ = true;
      return done(result_);
    case store::Write::Failed:
      break;
    }
    sink_.count(Counter::redisErrors); // OOM, BUSY...: give the lease up rather than leave it
    return sendRelease();
  }

  Action sendRelease() {
    return send(State::Releasing, {store::Store::release(keys_.value, token())});
  }

  Action send(State next, std::vector<Command> commands) {
    state_ = next;
    commands_ = std::move(commands);
    Action a = Action::of(Action::Kind::Send);
    a.commands = &commands_;
    return a;
  }

  Action done(Result result) {
    result_ = result;
    state_ = State::Done;
    return Action::of(Action::Kind::Done);
  }

  // The lease token, drawn when first needed (a hit needs none). Commands hold views of it.
  std::string_view lease() {
    if (!lent_.empty()) {
      return lent_;
    }
    if (lease_.empty()) {
      lease_ = codec::leaseRecord();
    }
    return lease_;
  }

  // The token once lease() was called.
  std::string_view token() const noexcept {
    return lent_.empty() ? std::string_view(lease_) : lent_;
  }

  // Hits and misses count the first look only.
  void countFirst(Counter c) {
    if (first_) {
      sink_.count(c);
      first_ = false;
    }
  }

  const store::Store& store_;
  const store::Keys& keys_;
  const Settings& settings_;
  Sink& sink_;
  std::string_view lent_; // a token lent by the driver, else empty
  std::string lease_;
  State state_ = State::Idle;
  std::vector<Command> commands_;
  std::vector<Reply> replies_, looked_;
  Envelope record_;
  std::string_view bytes_;
  long long pttl_ = -1;
  std::uint64_t expiresAt_ = 0;
  std::string sha1_, record_bytes_, ms_;
  std::vector<std::string> generations_;
  std::chrono::milliseconds pause_;
  Clock::time_point deadline_{};
  Result result_ = Result::LoadedUncached;
  Refresh refresh_ = Refresh::None;
  int takeovers_ = 0;
  bool first_ = true, waited_ = false, holdsLease_ = false, retriedScripted_ = false,
       leftBehind_ = false, fenced_ = false, written_ = false, tagMoved_ = false;
};

} // namespace cacheaside::flow
