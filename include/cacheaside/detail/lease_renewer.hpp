#pragma once
// Keeps leases alive while their loads run: one thread per cache, started on first use, renews
// each registered lease every period until its registration ends (with the load, also by
// exception).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/types.h>
#include <unistd.h>

namespace cacheaside::detail {

class LeaseRenewer {
public:
  using Clock = std::chrono::steady_clock;
  /// Renews one lease: (Redis key, lease token). Must not throw.
  using Renew = std::function<void(const std::string&, const std::string&)>;

  LeaseRenewer(Renew renew, std::chrono::milliseconds period)
      : renew_(std::move(renew)), period_(period) {}

  ~LeaseRenewer() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
      if (threadPid_ == ::getpid()) {
        thread_.join();
      } else {
        thread_.detach(); // a forked child inherited the handle, not the thread
      }
    }
  }

  LeaseRenewer(const LeaseRenewer&) = delete;
  LeaseRenewer& operator=(const LeaseRenewer&) = delete;

  /// Renews the lease until destroyed.
  class Registration {
  public:
    Registration(LeaseRenewer& owner, std::uint64_t id) : owner_(&owner), id_(id) {}
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;
    ~Registration() { owner_->remove(id_); }

  private:
    LeaseRenewer* owner_;
    std::uint64_t id_;
  };

  /// Starts renewing key's lease (token) every period from now.
  std::uint64_t add(std::string key, std::string token) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t id = nextId_++;
    leases_.emplace(id, Lease{std::move(key), std::move(token), Clock::now() + period_});
    if (thread_.joinable() && threadPid_ != ::getpid()) {
      thread_.detach(); // in a forked child: the thread stayed with the parent; start another
    }
    if (!thread_.joinable()) {
      thread_ = std::thread([this] { run(); });
      threadPid_ = ::getpid();
    }
    wake_.notify_all();
    return id;
  }

  /// Stops renewing a lease; a renewal already under way may still complete.
  void remove(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    leases_.erase(id);
  }

private:
  struct Lease {
    std::string key;
    std::string token;
    Clock::time_point due;
  };

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      auto next = Clock::time_point::max();
      for (const auto& entry : leases_) {
        next = std::min(next, entry.second.due);
      }
      if (next == Clock::time_point::max()) {
        wake_.wait(lock);
        continue;
      }
      if (wake_.wait_until(lock, next) == std::cv_status::no_timeout) {
        continue; // a lease was added or the renewer is stopping: look again
      }
      const auto now = Clock::now();
      std::vector<std::pair<std::string, std::string>> due;
      for (auto& entry : leases_) {
        if (entry.second.due <= now) {
          due.emplace_back(entry.second.key, entry.second.token);
          entry.second.due = now + period_;
        }
      }
      lock.unlock(); // Redis calls without the lock: loads may finish meanwhile
      for (const auto& lease : due) {
        renew_(lease.first, lease.second);
      }
      lock.lock();
    }
  }

  Renew renew_;
  const std::chrono::milliseconds period_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::uint64_t, Lease> leases_;
  std::uint64_t nextId_ = 0;
  bool stopping_ = false;
  std::thread thread_;
  pid_t threadPid_ = 0;
};

} // namespace cacheaside::detail
