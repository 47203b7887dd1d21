#pragma once
// Runs the get-or-load flows of many keys together for CacheAside<T, S>::getOrLoadMany: one
// pipeline per round for every flow that sends (lookups, fills, releases, polls), one loader call
// per round for every flow that asks to load, one pause for every flow that waits.

#include <cacheaside/codec/record.hpp>
#include <cacheaside/detail/backend.hpp>
#include <cacheaside/detail/lease_renewer.hpp>
#include <cacheaside/detail/random.hpp>
#include <cacheaside/detail/runner.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/flow/get_flow.hpp>
#include <cacheaside/store/store.hpp>

#include <algorithm>
#include <cstddef>
#include <deque>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cacheaside::detail {

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
    if (!backend_.allow()) {
      std::vector<std::size_t> all(keys.size());
      for (std::size_t i = 0; i < all.size(); ++i) {
        all[i] = i;
      }
      backend_.count(Counter::loads);
      std::vector<Answer> answers = load(all);
      for (std::size_t i = 0; i < keys.size(); ++i) {
        out[i] = std::move(answers[i].value);
      }
      return out;
    }
    const auto started = backend_.now();
    std::deque<Item> items;
    for (const std::string_view key : keys) {
      items.emplace_back(backend_, store_, keyNamespace, key, settings);
    }
    std::exception_ptr thrown;
    run(items, settings, negatives, load, renewer, thrown);
    bool gaveUp = false;
    for (std::size_t i = 0; i < items.size(); ++i) {
      Item& item = items[i];
      if (const auto left = item.flow.leftBehind()) {
        runner_.releaseLater(*left, renewer);
      }
      using Result = flow::GetFlow::Result;
      switch (item.flow.result()) {
      case Result::Hit:
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
      out[i] = std::move(item.value);
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

  // One key's flow and what it holds; not movable (the flow points into it).
  struct Item {
    Item(Backend& backend, const store::Store& store, std::string_view keyNamespace,
         std::string_view userKey, const flow::Settings& settings)
        : key(userKey), keys(store::keysFor(keyNamespace, userKey)), sink(backend, userKey),
          flow(store, keys, settings, sink), a(flow.start()) {}
    Item(const Item&) = delete;
    Item& operator=(const Item&) = delete;

    std::string_view key;
    store::Keys keys;
    Backend::CallSink sink;
    flow::GetFlow flow;
    flow::Action a;
    std::optional<T> value;
    Clock::time_point wake{}; // Sleep: when to look again
  };

  template <typename LoadMany>
  void run(std::deque<Item>& items, const flow::Settings& settings, bool negatives, LoadMany& load,
           LeaseRenewer& renewer, std::exception_ptr& thrown) {
    // Every flow ends on its own (waits by the wait budget, takeovers by a count), so each
    // round moves at least one flow on and the loop ends with the last of them.
    for (;;) {
      for (Item& item : items) {
        while (item.a.kind == Kind::Decode) {
          item.value = runner_.decodeValue(item.key, *item.a.record);
          item.a = item.flow.onDecoded(item.value.has_value(), draw());
        }
      }
      loadRound(items, settings, negatives, load, renewer, thrown);
      const auto now = backend_.now();
      std::vector<Item*> sending;
      std::optional<Clock::time_point> earliest;
      bool pending = false;
      for (Item& item : items) {
        if (item.a.kind == Kind::Sleep) {
          if (thrown) {
            item.a = flow::Action{}; // the call is failing: stop waiting for others' loads
            continue;
          }
          if (item.wake == Clock::time_point{}) {
            item.wake = now + item.a.pause;
          }
          if (item.wake <= now) {
            item.wake = {};
            item.a = item.flow.onSlept();
          } else {
            earliest = earliest ? std::min(*earliest, item.wake) : item.wake;
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
        std::this_thread::sleep_for(*earliest - now);
      } else if (!pending) {
        return;
      }
    }
  }

  // One loader call for every flow that asks to load now.
  template <typename LoadMany>
  void loadRound(std::deque<Item>& items, const flow::Settings& settings, bool negatives,
                 LoadMany& load, LeaseRenewer& renewer, std::exception_ptr& thrown) {
    std::vector<std::size_t> which;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (items[i].a.kind == Kind::Load) {
        which.push_back(i);
      }
    }
    if (which.empty()) {
      return;
    }
    if (thrown) { // an earlier round's loader threw: load nothing more, give the leases up
      for (const std::size_t i : which) {
        flow::Loaded failed;
        failed.kind = flow::Loaded::Kind::Threw;
        items[i].a = items[i].flow.onLoaded(std::move(failed), draw());
      }
      return;
    }
    backend_.count(Counter::loads);
    const auto started = backend_.now();
    std::vector<Answer> answers;
    {
      std::deque<LeaseRenewer::Registration> renewals;
      for (const std::size_t i : which) {
        const flow::LeaseRef& lease = items[i].a.renew;
        if (!lease.key.empty()) {
          renewals.emplace_back(renewer,
                                renewer.add(std::string(lease.key), std::string(lease.keepAlive),
                                            std::string(lease.token)));
        }
      }
      try {
        answers = load(which);
      } catch (...) {
        thrown = std::current_exception();
      }
    }
    const auto took = backend_.since(started);
    for (std::size_t n = 0; n < which.size(); ++n) {
      Item& item = items[which[n]];
      flow::Loaded loaded;
      loaded.took = took;
      if (thrown) {
        loaded.kind = flow::Loaded::Kind::Threw;
      } else {
        Answer& answer = answers[n];
        item.value = std::move(answer.value);
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
  // commands are never split).
  void sendRound(const std::vector<Item*>& sending) {
    std::size_t begin = 0;
    while (begin < sending.size()) {
      std::vector<Command> commands;
      commands.reserve(kMaxPipeline);
      std::size_t end = begin;
      while (end < sending.size() &&
             (end == begin || commands.size() + sending[end]->a.commands->size() <= kMaxPipeline)) {
        const auto& mine = *sending[end]->a.commands;
        commands.insert(commands.end(), mine.begin(), mine.end());
        ++end;
      }
      try {
        std::vector<Reply> replies = backend_.exchange({}, commands);
        std::size_t at = 0;
        for (std::size_t i = begin; i < end; ++i) {
          Item& item = *sending[i];
          const std::size_t n = item.a.commands->size();
          std::vector<Reply> own;
          own.reserve(n);
          for (std::size_t j = 0; j < n && at < replies.size(); ++j) {
            own.push_back(std::move(replies[at++]));
          }
          item.a = item.flow.onReplies(std::move(own), backend_.now());
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
};

} // namespace cacheaside::detail
