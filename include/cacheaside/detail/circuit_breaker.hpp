#pragma once
// Consecutive Redis failures open the breaker: for a cool-down the cache bypasses Redis, then one
// probe call decides whether to close it again. Closed-state checks are one atomic load.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace cacheaside::detail {

class CircuitBreaker {
public:
  using Clock = std::chrono::steady_clock;

  /// What a state change was, for events.
  enum class Change { None, Opened, Closed };

  CircuitBreaker(std::uint32_t threshold, std::chrono::milliseconds cooldown)
      : threshold_(threshold), cooldown_(cooldown) {}

  /// Whether this call may use Redis. While open, false until the cool-down ends; then true for
  /// exactly one caller (the probe) until the probe reports.
  bool allow(Clock::time_point now) {
    if (state_.load(std::memory_order_acquire) == kClosed) {
      return true;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    const int state = state_.load(std::memory_order_relaxed);
    // A probe that never reported (its call ended some other way) is replaced after a cool-down.
    if (state != kClosed && now >= reopenAt_) {
      state_.store(kProbing, std::memory_order_release);
      reopenAt_ = now + cooldown_;
      return true;
    }
    return state == kClosed;
  }

  /// A Redis call succeeded.
  Change onSuccess() {
    if (state_.load(std::memory_order_acquire) == kClosed &&
        failures_.load(std::memory_order_relaxed) == 0) {
      return Change::None;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    failures_.store(0, std::memory_order_relaxed);
    if (state_.load(std::memory_order_relaxed) == kClosed) {
      return Change::None;
    }
    state_.store(kClosed, std::memory_order_release);
    return Change::Closed;
  }

  /// A Redis call failed (connection, timeout).
  Change onFailure(Clock::time_point now) {
    std::lock_guard<std::mutex> lock(mutex_);
    const int state = state_.load(std::memory_order_relaxed);
    if (state == kOpen) {
      return Change::None;
    }
    const auto failures = failures_.load(std::memory_order_relaxed) + 1;
    failures_.store(failures, std::memory_order_relaxed);
    if (state == kProbing || failures >= threshold_) {
      state_.store(kOpen, std::memory_order_release);
      reopenAt_ = now + cooldown_;
      return state == kProbing ? Change::None : Change::Opened;
    }
    return Change::None;
  }

  /// Whether calls currently bypass Redis (open or probing).
  bool isOpen() const { return state_.load(std::memory_order_acquire) != kClosed; }

private:
  static constexpr int kClosed = 0;
  static constexpr int kOpen = 1;
  static constexpr int kProbing = 2;

  const std::uint32_t threshold_;
  const std::chrono::milliseconds cooldown_;
  std::atomic<int> state_{kClosed};
  std::atomic<std::uint32_t> failures_{0};
  std::mutex mutex_;
  Clock::time_point reopenAt_{};
};

} // namespace cacheaside::detail
