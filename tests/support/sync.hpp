#pragma once
// Thread coordination for tests (C++17 has no std::latch).

#include <condition_variable>
#include <cstddef>
#include <mutex>

namespace testsupport {

// Counts down to zero once; wait() blocks until it gets there.
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
    zero_.wait(lock, [&] { return count_ == 0; });
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
