#pragma once
// In-process single-flight: concurrent calls for one key run the work once and share its result
// or its exception. An entry lives only while its work runs, or until forget() closes it to
// later callers. Work that takes a Gate is closed to later callers until it opens the gate (when
// what it is doing may no longer predate them); only then does it enter the table, so that work
// that never opens (a cache hit) costs one lookup under the shard's lock and no allocation.
// Work about to wait for something another call of the key is already waiting for may merge
// into that call instead (then later reads are shared: one per process after the wake).

#include <cacheaside/errors.hpp>
#include <cacheaside/store/keys.hpp>

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cacheaside::detail {

template <typename R> class SingleFlight {
  struct Flight;
  struct Shard;
  enum class State { Closed, Open, Held };

public:
  /// The running call's say over whether later callers may join it. A call starts outside the
  /// table (later callers run on their own); the first open() or hold() enters it, unless
  /// another call for the key is there already (this one then stays on its own).
  class Gate {
  public:
    /// Lets later callers join the call (and wait for its result).
    void open() { set(State::Open); }
    /// Sends later callers off to run the work themselves, without a flight.
    void close() { set(State::Closed); }
    /// Makes later callers wait (within their hold limit) until the call opens, then join it,
    /// or until it closes or finishes, then run on their own: for a step whose result they may
    /// not share (a read sent before they started) but whose next step they may.
    void hold() { set(State::Held); }
    /// For work that is about to wait (it holds nothing, and its next step is a read that comes
    /// after now): when another call for the key is in the table and open, joins it and returns
    /// true; the work should then return at once, and run() returns that call's result instead
    /// of the work's. False, and nothing changes, when this call is in the table itself or no
    /// open call is.
    bool merge() {
      if (flight_ || merged_) {
        return false; // callers may be waiting for this call: it runs to the end
      }
      std::lock_guard<std::mutex> lock(home_->mutex);
      const auto it = home_->flights.find(*key_);
      if (it == home_->flights.end() || it->second->state != State::Open) {
        return false;
      }
      merged_ = it->second;
      ++merged_->followers;
      return true;
    }

  private:
    friend class SingleFlight;
    Gate(Shard* shard, Shard& home, const std::string* key, std::shared_ptr<Flight> flight)
        : shard_(shard), home_(&home), key_(key), flight_(std::move(flight)),
          entered_(flight_ != nullptr) {}

    void set(State state) {
      if (shard_ == nullptr || (entered_ && !flight_) || (!entered_ && state == State::Closed)) {
        return; // on its own for good, or closed as it is outside the table
      }
      std::lock_guard<std::mutex> lock(shard_->mutex);
      if (!entered_) {
        entered_ = true;
        auto [it, inserted] = shard_->flights.try_emplace(*key_);
        if (!inserted) {
          return; // another call has the key
        }
        it->second = std::make_shared<Flight>();
        it->second->state = state;
        flight_ = it->second;
        return;
      }
      bool wake = false;
      {
        std::lock_guard<std::mutex> inner(flight_->mutex);
        wake = flight_->state == State::Held && flight_->held > 0;
        flight_->state = state;
      }
      if (wake) {
        flight_->done.notify_all();
      }
    }

    // Only the thread running the work touches the gate; the flight's state and the table are
    // guarded as Flight says.
    Shard* shard_;                   // null: the work runs without a flight, for good
    Shard* home_;                    // the key's shard, for merge()
    const std::string* key_;         // the key the flight is entered under
    std::shared_ptr<Flight> flight_; // null until entered
    std::shared_ptr<Flight> merged_; // the call merge() joined
    bool entered_;                   // has tried to enter
  };

  /// Runs work for key unless a call for key is already running and open, in which case it calls
  /// onJoin(), waits for that call and returns a copy of its result (or rethrows its exception).
  /// work takes a Gate& (see Gate) or nothing (its flight is entered open at once). A caller that
  /// finds the running call closed, or held for longer than holdLimit, or that may not join
  /// (mayJoin false), runs work itself, with a gate that does nothing. Throws Error when this
  /// thread is already running work for key (work calling run() for its own key would wait for
  /// itself forever).
  template <typename Work, typename OnJoin>
  R run(const std::string& key, Work&& work, OnJoin&& onJoin, bool mayJoin = true,
        std::chrono::steady_clock::duration holdLimit = {}) {
    auto& here = runningHere();
    for (const auto& running : here) {
      if (running.first == this && *running.second == key) {
        throw Error("cacheaside: getOrLoad for '" + printableKey(key) +
                    "' was called from inside its own load (a loader or event handler that "
                    "reads the key it is loading)");
      }
    }
    constexpr bool kGated = std::is_invocable_v<Work&, Gate&>;
    Shard& shard = shardFor(key);
    std::shared_ptr<Flight> flight;
    bool joined = false;
    bool alone = false; // found a closed call, or may not join: runs without a flight
    std::optional<std::chrono::steady_clock::time_point> holdUntil;
    // Bounded by holdUntil: each pass either settles or waits for a held call to change.
    for (;;) {
      std::unique_lock<std::mutex> lock(shard.mutex);
      const auto it = shard.flights.find(key);
      if (it == shard.flights.end()) {
        if (!kGated) {
          flight = std::make_shared<Flight>();
          flight->state = State::Open;
          shard.flights.emplace(key, flight);
        }
        break;
      }
      const std::shared_ptr<Flight> running = it->second;
      std::unique_lock<std::mutex> held(running->mutex);
      if (mayJoin && running->state == State::Open) {
        flight = running;
        ++flight->followers;
        joined = true;
        break;
      }
      if (!holdUntil) {
        holdUntil = std::chrono::steady_clock::now() + holdLimit;
      }
      if (!mayJoin || running->state == State::Closed ||
          std::chrono::steady_clock::now() >= *holdUntil) {
        alone = true;
        break;
      }
      lock.unlock(); // the state changes under both mutexes: nothing is missed in between
      ++running->held;
      running->done.wait_until(held, *holdUntil,
                               [&] { return running->state != State::Held || running->finished; });
      --running->held;
    }
    if (joined) {
      onJoin();
      return awaitResult(*flight);
    }
    here.emplace_back(this, &key);
    const Running running{here};
    Gate gate(alone ? nullptr : &shard, shard, &key, flight);
    if (alone) {
      R result = invoke(work, gate);
      if (gate.merged_) {
        onJoin();
        return awaitResult(*gate.merged_);
      }
      return result;
    }
    try {
      R result = invoke(work, gate);
      if (gate.merged_) {
        onJoin(); // merged before entering: no one waits for this call
        return awaitResult(*gate.merged_);
      }
      if (Flight* entered = gate.flight_.get()) {
        finish(shard, key, *entered, &result, nullptr);
      }
      return result;
    } catch (...) {
      if (Flight* entered = gate.flight_.get()) {
        finish(shard, key, *entered, nullptr, std::current_exception());
      }
      throw;
    }
  }

  /// Closes the call in flight for key (if any) to later callers: they start a call of their
  /// own. The callers already waiting for it still get its result.
  void forget(const std::string& key) {
    Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mutex);
    shard.flights.erase(key);
  }

  /// forget() for every key.
  void forgetAll() {
    for (auto& shard : shards_) {
      std::lock_guard<std::mutex> lock(shard.mutex);
      shard.flights.clear();
    }
  }

  /// Keys with work in flight now.
  std::size_t inFlight() const {
    std::size_t n = 0;
    for (const auto& shard : shards_) {
      std::lock_guard<std::mutex> lock(shard.mutex);
      n += shard.flights.size();
    }
    return n;
  }

  /// Callers waiting for the call in flight for key (0 when there is none).
  std::size_t followers(const std::string& key) const {
    const Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mutex);
    const auto it = shard.flights.find(key);
    return it == shard.flights.end() ? 0 : it->second->followers;
  }

  /// Callers held back by the call in flight for key, waiting for it to open or end.
  std::size_t holding(const std::string& key) const {
    const Shard& shard = shardFor(key);
    std::lock_guard<std::mutex> lock(shard.mutex);
    const auto it = shard.flights.find(key);
    if (it == shard.flights.end()) {
      return 0;
    }
    std::lock_guard<std::mutex> inner(it->second->mutex);
    return it->second->held;
  }

  /// Hash buckets held across shards (to show that finished keys leave nothing behind).
  std::size_t bucketCount() const {
    std::size_t n = 0;
    for (const auto& shard : shards_) {
      std::lock_guard<std::mutex> lock(shard.mutex);
      n += shard.flights.bucket_count();
    }
    return n;
  }

private:
  struct Flight {
    std::mutex mutex;
    std::condition_variable done; // finished, or the state left Held while callers were held
    bool finished = false;        // flight mutex
    std::size_t followers = 0;    // guarded by the shard's mutex
    State state = State::Closed;  // written under both mutexes, read under either
    std::size_t held = 0;         // callers waiting for a held state to change (flight mutex)
    std::optional<R> result;
    std::exception_ptr error;
  };

  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::shared_ptr<Flight>> flights;
  };

  static constexpr std::size_t kShards = 16;

  // The (instance, key) pairs whose work runs on this thread, outermost first.
  using RunningList = std::vector<std::pair<const SingleFlight*, const std::string*>>;
  static RunningList& runningHere() {
    thread_local RunningList list;
    return list;
  }
  struct Running {
    RunningList& list;
    ~Running() { list.pop_back(); }
  };

  // A joined call's result (copied outside the lock: it no longer changes once finished).
  static R awaitResult(Flight& flight) {
    {
      std::unique_lock<std::mutex> lock(flight.mutex);
      flight.done.wait(lock, [&] { return flight.finished; });
    }
    if (flight.error) {
      std::rethrow_exception(flight.error);
    }
    return *flight.result;
  }

  template <typename Work> static R invoke(Work& work, Gate& gate) {
    if constexpr (std::is_invocable_v<Work&, Gate&>) {
      return work(gate);
    } else {
      return work();
    }
  }

  Shard& shardFor(std::string_view key) {
    return shards_[std::hash<std::string_view>{}(key) % kShards];
  }
  const Shard& shardFor(std::string_view key) const {
    return shards_[std::hash<std::string_view>{}(key) % kShards];
  }

  // Removes the key (unless forget() already replaced it) so that later calls start afresh,
  // then hands the result to the callers that joined, and wakes the ones it held (they run on
  // their own). No one can join or be held once the key is gone.
  static void finish(Shard& shard, const std::string& key, Flight& flight, const R* result,
                     std::exception_ptr error) {
    std::size_t followers = 0;
    {
      std::lock_guard<std::mutex> lock(shard.mutex);
      const auto it = shard.flights.find(key);
      if (it != shard.flights.end() && it->second.get() == &flight) {
        shard.flights.erase(it);
      }
      followers = flight.followers;
    }
    {
      std::lock_guard<std::mutex> lock(flight.mutex);
      if (followers > 0) {
        if (result != nullptr) {
          flight.result = *result;
        }
        flight.error = std::move(error);
      }
      flight.finished = true;
      if (followers == 0 && flight.held == 0) {
        return;
      }
    }
    flight.done.notify_all();
  }

  std::array<Shard, kShards> shards_;
};

} // namespace cacheaside::detail
