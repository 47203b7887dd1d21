#pragma once
// Runs the get-or-load flows of many keys together for CacheAside<T, S>::getOrLoadMany: near
// hits first, then one pipeline per round for every flow that sends (lookups, fills, releases,
// polls), one loader call per round for every flow that asks to load, one wait for every flow
// that waits (cut short by the near tier's invalidations when there is one). The flows of a
// batch share one lease token, and the batch allocates little per key: a hundred keys cost
// little more than their commands written by hand.

#include <cacheaside/codec/record.hpp>
#include <cacheaside/detail/backend.hpp>
#include <cacheaside/detail/lease_renewer.hpp>
#include <cacheaside/detail/random.hpp>
#include <cacheaside/detail/runner.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/flow/freshness.hpp>
#include <cacheaside/flow/get_flow.hpp>
#include <cacheaside/near/tier.hpp>
#include <cacheaside/store/keys.hpp>
#include <cacheaside/store/store.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cacheaside::detail {

// The distinct keys of a batch in first-seen order, and for each position the index of its key
// among them. Throws std::invalid_argument for an empty key.
struct DistinctKeys {
  std::vector<std::string_view> keys;
  std::vector<std::size_t> slot;

  template <typename Range> explicit DistinctKeys(const Range& range) {
    for (const auto& key : range) {
      const std::string_view k(key);
      if (k.empty()) {
        throw std::invalid_argument("cacheaside: the key must not be empty");
      }
      keys.push_back(k);
    }
    // Open addressing over a table at most half full: no allocation per key.
    std::size_t size = 16;
    while (size < keys.size() * 2) {
      size *= 2;
    }
    std::vector<std::size_t> table(size, 0); // 0: empty; else an index into keys, plus 1
    const std::hash<std::string_view> hash;
    slot.reserve(keys.size());
    std::size_t distinct = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::string_view k = keys[i];
      for (std::size_t at = hash(k) & (size - 1);; at = (at + 1) & (size - 1)) {
        if (table[at] == 0) {
          table[at] = distinct + 1;
          slot.push_back(distinct);
          keys[distinct++] = k; // distinct <= i: an entry already read
          break;
        }
        if (keys[table[at] - 1] == k) {
          slot.push_back(table[at] - 1);
          break;
        }
      }
    }
    keys.resize(distinct);
  }

  bool duplicates() const noexcept { return keys.size() != slot.size(); }
};

template <typename T, typename S> class BatchRunner {
public:
  // Commands per pipeline: a batch of 10,000 keys is sent in slices, so that neither the
  // client's buffers nor one server's reply grow without bound.
  static constexpr std::size_t kMaxPipeline = 1024;

  // What the loader said of one key it was asked for.
  struct Answer {
    std::optional<T> value; // empty: not returned, or returned as "not found"
  };

  // The references must outlive the runner.
  BatchRunner(Backend& backend, const store::Store& store, Runner<T, S>& runner)
      : backend_(backend), store_(store), runner_(runner) {}

  // The near tier (borrowed), or null: read and filled by calls without tags, and waking the
  // waits of every call.
  void setNear(near::NearTier<T>* tier) noexcept { near_ = tier; }

  // Gets or loads every key of keys (distinct, non-empty). load(indices) calls the user's
  // loader once for keys[indices...] and answers for each of them, in order. negatives: keys
  // the loader did not return (or returned empty) are cached as "not found"; else they are
  // not cached. Returns a value (or std::nullopt) per key. Rethrows what load throws, after
  // giving up the leases taken for it.
  template <typename LoadMany>
  std::vector<std::optional<T>> fetch(const std::vector<std::string_view>& keys,
                                      std::string_view keyNamespace, const flow::Settings& settings,
                                      bool negatives, LoadMany& load, LeaseRenewer& renewer) {
    std::vector<std::optional<T>> out(keys.size());
    if (keys.empty()) {
      return out;
    }
    // A near copy carries no tag generations: calls that name tags read Redis.
    const bool nearReads = near_ != nullptr && settings.tags.empty();
    Items items(keys.size());
    const std::string lease = codec::leaseRecord(); // the keys are distinct: one token for all
    for (std::size_t i = 0; i < keys.size(); ++i) {
      std::string redisKey = store::valueKey(keyNamespace, keys[i]);
      if (nearReads) {
        if (auto held = near_->find(redisKey)) {
          out[i].emplace(*held);
          continue;
        }
      }
      items.add(backend_, store_, i, keys[i], std::move(redisKey), settings, lease);
    }
    if (items.size() == 0) {
      return out;
    }
    if (!backend_.allow()) {
      std::vector<std::size_t> all(items.size());
      for (std::size_t n = 0; n < items.size(); ++n) {
        all[n] = items[n].pos;
      }
      backend_.count(Counter::loads);
      std::vector<Answer> answers = load(all);
      for (std::size_t n = 0; n < all.size(); ++n) {
        out[all[n]] = std::move(answers[n].value);
      }
      return out;
    }
    const auto started = backend_.now();
    if (nearReads) {
      for (std::size_t n = 0; n < items.size(); ++n) {
        items[n].ticket = near_->ticket(items[n].keys.value); // before the read
      }
    }
    std::exception_ptr thrown;
    run(items, settings, negatives, load, renewer, thrown);
    bool gaveUp = false;
    for (std::size_t n = 0; n < items.size(); ++n) {
      Item& item = items[n];
      if (const auto left = item.flow.leftBehind()) {
        runner_.releaseLater(*left, renewer);
      }
      using Result = flow::GetFlow::Result;
      switch (item.flow.result()) {
      case Result::Hit:
        if (nearReads && item.value && item.flow.refresh() == flow::Refresh::None) {
          const Envelope& record = item.flow.record();
          near_->offer(item.keys.value, item.ticket, *item.value, record.payload.size(),
                       flow::nearLifetime(item.flow.pttl(), record.staleMillis, record.loadMillis,
                                          settings.xfetchBeta));
        }
        backend_.emitSince(EventType::Hit, item.key, started);
        break;
      case Result::Negative:
        item.value.reset();
        backend_.emitSince(EventType::Hit, item.key, started);
        break;
      case Result::GaveUp:
        gaveUp = true;
        break;
      case Result::LoaderThrew:
      case Result::Loaded:
      case Result::LoadedUncached:
        backend_.emitSince(EventType::Miss, item.key, started);
        break;
      }
      out[item.pos] = std::move(item.value);
    }
    if (thrown) {
      std::rethrow_exception(thrown);
    }
    if (gaveUp) {
      throw LockTimeoutError("cacheaside: gave up after " +
                             std::to_string(settings.entry.waitBudget.count()) +
                             " ms waiting for other callers to load keys of a batch");
    }
    return out;
  }

private:
  using Kind = flow::Action::Kind;
  using Clock = Backend::Clock;
  using Ticket = typename near::NearTier<T>::Ticket;

  // One key's flow and what it holds; not movable (the flow points into it).
  struct Item {
    Item(Backend& backend, const store::Store& store, std::size_t position,
         std::string_view userKey, std::string redisKey, const flow::Settings& settings,
         std::string_view lease)
        : pos(position), key(userKey), keys{std::move(redisKey), std::string()},
          sink(backend, userKey), flow(store, keys, settings, sink, lease), a(flow.start()) {}
    Item(const Item&) = delete;
    Item& operator=(const Item&) = delete;

    std::size_t pos; // the key's index in the batch
    std::string_view key;
    store::Keys keys; // the value key only: a batch takes no refresh lease
    Backend::CallSink sink;
    flow::GetFlow flow;
    flow::Action a;
    std::optional<T> value;
    Clock::time_point wake{}; // Sleep: when to look again
    std::uint64_t mark = 0;   // the key's near invalidations before its last look
    Ticket ticket;            // taken before the first read, for the near install
  };

  // The items of a batch in one allocation (they cannot move).
  class Items {
  public:
    explicit Items(std::size_t capacity) : slots_(new std::optional<Item>[capacity]) {}
    template <typename... Args> void add(Args&&... args) {
      slots_[size_].emplace(std::forward<Args>(args)...);
      ++size_;
    }
    std::size_t size() const noexcept { return size_; }
    Item& operator[](std::size_t n) noexcept { return *slots_[n]; }

  private:
    std::unique_ptr<std::optional<Item>[]> slots_;
    std::size_t size_ = 0;
  };

  template <typename LoadMany>
  void run(Items& items, const flow::Settings& settings, bool negatives, LoadMany& load,
           LeaseRenewer& renewer, std::exception_ptr& thrown) {
    // Every flow ends on its own (waits by the wait budget, takeovers by a count), so each
    // round moves at least one flow on and the loop ends with the last of them.
    std::vector<Item*> sending;
    std::vector<std::pair<std::string_view, std::uint64_t>> marks;
    for (;;) {
      for (std::size_t n = 0; n < items.size(); ++n) {
        Item& item = items[n];
        while (item.a.kind == Kind::Decode) {
          item.value = runner_.decodeValue(item.key, *item.a.record);
          item.a = item.flow.onDecoded(item.value.has_value(), draw());
        }
      }
      loadRound(items, settings, negatives, load, renewer, thrown);
      const auto now = backend_.now();
      sending.clear();
      marks.clear();
      std::optional<Clock::time_point> earliest;
      bool pending = false;
      for (std::size_t n = 0; n < items.size(); ++n) {
        Item& item = items[n];
        if (item.a.kind == Kind::Sleep) {
          if (thrown) {
            item.a = flow::Action{}; // the call is failing: stop waiting for others' loads
            continue;
          }
          if (item.wake == Clock::time_point{}) {
            item.wake = now + item.a.pause;
          }
          if (item.wake <= now || (near_ != nullptr && moved(item))) {
            item.wake = {};
            item.a = item.flow.onSlept();
          } else {
            earliest = earliest ? std::min(*earliest, item.wake) : item.wake;
            if (near_ != nullptr) {
              marks.emplace_back(item.keys.value, item.mark);
            }
          }
        }
        if (item.a.kind == Kind::Send) {
          sending.push_back(&item);
        }
        pending = pending || item.a.kind != Kind::Done;
      }
      if (!sending.empty()) {
        sendRound(sending);
      } else if (earliest) {
        const auto pause = std::chrono::duration_cast<std::chrono::milliseconds>(*earliest - now);
        if (near_ != nullptr) {
          near_->waitAny(marks, pause); // woken early by a fill's invalidation
        } else {
          std::this_thread::sleep_for(pause);
        }
      } else if (!pending) {
        return;
      }
    }
  }

  // Whether the near tier saw the item's key invalidated since its last look.
  bool moved(const Item& item) const noexcept {
    return near_->ticket(item.keys.value).sequence != item.mark;
  }

  // One loader call for every flow that asks to load now.
  template <typename LoadMany>
  void loadRound(Items& items, const flow::Settings& settings, bool negatives, LoadMany& load,
                 LeaseRenewer& renewer, std::exception_ptr& thrown) {
    std::vector<std::size_t> which;  // item numbers
    std::vector<std::size_t> asking; // their keys' positions
    for (std::size_t n = 0; n < items.size(); ++n) {
      if (items[n].a.kind == Kind::Load) {
        which.push_back(n);
        asking.push_back(items[n].pos);
      }
    }
    if (which.empty()) {
      return;
    }
    if (thrown) { // an earlier round's loader threw: load nothing more, give the leases up
      for (const std::size_t n : which) {
        flow::Loaded failed;
        failed.kind = flow::Loaded::Kind::Threw;
        items[n].a = items[n].flow.onLoaded(std::move(failed), draw());
      }
      return;
    }
    backend_.count(Counter::loads);
    const auto started = backend_.now();
    std::vector<Answer> answers;
    {
      std::vector<LeaseJob> renewals;
      renewals.reserve(which.size());
      for (const std::size_t n : which) {
        const flow::LeaseRef& lease = items[n].a.renew;
        if (!lease.key.empty()) {
          renewals.push_back(LeaseJob{std::string(lease.key), std::string(lease.keepAlive),
                                      std::string(lease.token), false});
        }
      }
      const LeaseRenewer::Registrations renewing(renewer, std::move(renewals));
      try {
        answers = load(asking);
      } catch (...) {
        thrown = std::current_exception();
      }
    }
    const auto took = backend_.since(started);
    for (std::size_t k = 0; k < which.size(); ++k) {
      Item& item = items[which[k]];
      flow::Loaded loaded;
      loaded.took = took;
      if (thrown) {
        loaded.kind = flow::Loaded::Kind::Threw;
      } else {
        item.value = std::move(answers[k].value);
        if (!item.value) {
          loaded.kind = negatives ? flow::Loaded::Kind::Negative : flow::Loaded::Kind::NotCacheable;
        } else if (item.a.encode) {
          runner_.encode(*item.value, loaded, settings);
        }
      }
      item.a = item.flow.onLoaded(std::move(loaded), draw());
    }
  }

  // The commands of every sending flow, in pipelines of at most kMaxPipeline commands (a flow's
  // commands are never split). The commands are moved out of the flows, which do not read them
  // again.
  void sendRound(const std::vector<Item*>& sending) {
    std::vector<Command> commands;
    std::size_t begin = 0;
    while (begin < sending.size()) {
      commands.clear();
      std::size_t end = begin;
      std::size_t count = 0;
      while (end < sending.size() &&
             (end == begin || count + sending[end]->a.commands->size() <= kMaxPipeline)) {
        count += sending[end]->a.commands->size();
        ++end;
      }
      commands.reserve(count);
      for (std::size_t i = begin; i < end; ++i) {
        Item& item = *sending[i];
        if (near_ != nullptr) {
          item.mark = near_->ticket(item.keys.value).sequence; // before the look
        }
        std::vector<Command>& mine = *item.a.commands;
        std::move(mine.begin(), mine.end(), std::back_inserter(commands));
      }
      try {
        std::vector<Reply> replies = backend_.exchange({}, commands);
        const auto now = backend_.now();
        auto at = replies.begin();
        for (std::size_t i = begin; i < end; ++i) {
          Item& item = *sending[i];
          const auto n = static_cast<std::ptrdiff_t>(std::min<std::size_t>(
              item.a.commands->size(), static_cast<std::size_t>(replies.end() - at)));
          std::vector<Reply> own(std::make_move_iterator(at), std::make_move_iterator(at + n));
          at += n;
          item.a = item.flow.onReplies(std::move(own), now);
        }
      } catch (const ConnectionError&) {
        for (std::size_t i = begin; i < end; ++i) {
          sending[i]->a = sending[i]->flow.onTransportError();
        }
      }
      begin = end;
    }
  }

  static double draw() { return ThreadRandom::local().unitOpenClosed(); }

  Backend& backend_;
  const store::Store& store_;
  Runner<T, S>& runner_;
  near::NearTier<T>* near_ = nullptr;
};

} // namespace cacheaside::detail
