#pragma once
// Thread coordination for tests (C++17 has no std::latch).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <stdexcept>

namespace testsupport {

// Counts down to zero once; wait() blocks until it gets there, for a minute at most (then it
// throws, so that a test that goes wrong fails rather than hangs).
class Latch {
public:
  explicit Latch(std::size_t count) : count_(count) {}

  void countDown() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (count_ > 0 && --count_ == 0) {
      zero_.notify_all();
    }
  }

  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!zero_.wait_for(lock, std::chrono::minutes(1), [&] { return count_ == 0; })) {
      throw std::runtime_error("testsupport::Latch: still waiting after a minute");
    }
  }

  void arriveAndWait() {
    countDown();
    wait();
  }

private:
  std::mutex mutex_;
  std::condition_variable zero_;
  std::size_t count_;
};

} // namespace testsupport
