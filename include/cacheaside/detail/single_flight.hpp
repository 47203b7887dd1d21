#pragma once
// In-process single-flight: concurrent calls for one key run the work once and share its result
// or its exception. An entry lives only while its work runs.

#include <array>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace cacheaside::detail {

template <typename R> class SingleFlight {
public:
  /// Runs work() for key unless a call for key is already running, in which case it calls
  /// onJoin(), waits for that call and returns a copy of its result (or rethrows its exception).
  template <typename Work, typename OnJoin>
  R run(const std::string& key, Work&& work, OnJoin&& onJoin) {
    Shard& shard = shardFor(key);
    std::shared_ptr<Flight> flight;
    bool joined = false;
    {
      std::lock_guard<std::mutex> lock(shard.mutex);
      auto [it, inserted] = shard.flights.try_emplace(key);
      if (!inserted) {
        flight = it->second;
        ++flight->followers;
      } else {
        it->second = std::make_shared<Flight>();
        flight = it->second;
      }
      joined = !inserted;
    }
    if (joined) {
      onJoin();
      std::unique_lock<std::mutex> lock(flight->mutex);
      flight->done.wait(lock, [&] { return flight->finished; });
      if (flight->error) {
        std::rethrow_exception(flight->error);
      }
      return *flight->result;
    }
    try {
      R result = std::forward<Work>(work)();
      if (retire(shard, key, *flight) > 0) {
        publish(*flight, &result, nullptr);
      }
      return result;
    } catch (...) {
      if (retire(shard, key, *flight) > 0) {
        publish(*flight, nullptr, std::current_exception());
      }
      throw;
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
    std::condition_variable done;
    bool finished = false;
    std::size_t followers = 0; // guarded by the shard's mutex
    std::optional<R> result;
    std::exception_ptr error;
  };

  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, std::shared_ptr<Flight>> flights;
  };

  static constexpr std::size_t kShards = 16;

  Shard& shardFor(std::string_view key) {
    return shards_[std::hash<std::string_view>{}(key) % kShards];
  }
  const Shard& shardFor(std::string_view key) const {
    return shards_[std::hash<std::string_view>{}(key) % kShards];
  }

  // Removes the key so that later calls start afresh; returns how many callers joined (no one
  // can join once the key is gone, so a flight nobody joined needs no publishing).
  static std::size_t retire(Shard& shard, const std::string& key, Flight& flight) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    shard.flights.erase(key);
    return flight.followers;
  }

  static void publish(Flight& flight, const R* result, std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(flight.mutex);
      if (result != nullptr) {
        flight.result = *result;
      }
      flight.error = std::move(error);
      flight.finished = true;
    }
    flight.done.notify_all();
  }

  std::array<Shard, kShards> shards_;
};

} // namespace cacheaside::detail
