#pragma once
// Keeps leases alive while their loads run, and releases leases that Redis failures left
// behind. One thread per cache, started on first use. Each tick sends every job that is due in
// one batch (one pipeline): renewals every period while a registration lives, and releases
// (by token) with a growing pause until one succeeds or the lease has expired by itself.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace cacheaside::detail {

// One renewal or release.
struct LeaseJob {
  std::string key;       // the lease key
  std::string keepAlive; // a value the lease's holder keeps alive (refreshes), or empty
  std::string token;
  bool release = false;
};

class LeaseRenewer {
public:
  using Clock = std::chrono::steady_clock;
  // Sends a batch; returns, for each job, whether it is finished (a release that succeeded).
  // Must not throw.
  using Send = std::function<std::vector<bool>(const std::vector<LeaseJob>&)>;

  // period: between renewals of one lease; lockTtl: how long a lease lives unrenewed (releases
  // are given up after it).
  LeaseRenewer(Send send, std::chrono::milliseconds period, std::chrono::milliseconds lockTtl)
      : send_(std::move(send)), period_(period), lockTtl_(lockTtl) {}

  ~LeaseRenewer() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  LeaseRenewer(const LeaseRenewer&) = delete;
  LeaseRenewer& operator=(const LeaseRenewer&) = delete;

  // Renews the lease until destroyed.
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

  // Renews several leases until destroyed, added and removed under one lock each.
  class Registrations {
  public:
    Registrations(LeaseRenewer& owner, std::vector<LeaseJob> renewals)
        : owner_(&owner), count_(renewals.size()), first_(owner.addAll(std::move(renewals))) {}
    Registrations(const Registrations&) = delete;
    Registrations& operator=(const Registrations&) = delete;
    ~Registrations() { owner_->removeAll(first_, count_); }

  private:
    LeaseRenewer* owner_;
    std::size_t count_;
    std::uint64_t first_;
  };

  // Starts renewing a lease every period from now.
  std::uint64_t add(std::string key, std::string keepAlive, std::string token) {
    return schedule(LeaseJob{std::move(key), std::move(keepAlive), std::move(token), false},
                    Clock::now() + period_);
  }

  // add() for each of renewals, with one lock and one wake-up; their ids follow each other
  // from the one returned.
  std::uint64_t addAll(std::vector<LeaseJob> renewals) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t first = nextId_;
    if (renewals.empty()) {
      return first;
    }
    const auto now = Clock::now();
    for (auto& job : renewals) {
      job.release = false;
      jobs_.emplace(nextId_++, Entry{std::move(job), now + period_, now + lockTtl_, kFirstRetry});
    }
    startLocked();
    return first;
  }

  // Releases a lease by token as soon as Redis answers, retrying until lockTtl has passed.
  void releaseLater(std::string key, std::string token) {
    schedule(LeaseJob{std::move(key), {}, std::move(token), true}, Clock::now());
  }

  // Stops renewing a lease; a renewal already under way may still complete.
  void remove(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.erase(id);
  }

  // remove() for ids first, first + 1, ..., first + count - 1.
  void removeAll(std::uint64_t first, std::size_t count) {
    if (count == 0) {
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.erase(jobs_.lower_bound(first), jobs_.lower_bound(first + count));
  }

  // Jobs scheduled now (renewals and pending releases).
  std::size_t pending() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return jobs_.size();
  }

private:
  static constexpr std::chrono::milliseconds kFirstRetry{10};

  struct Entry {
    LeaseJob job;
    Clock::time_point due;
    Clock::time_point giveUp;        // releases only
    std::chrono::milliseconds retry; // releases only
  };

  std::uint64_t schedule(LeaseJob job, Clock::time_point due) {
    std::lock_guard<std::mutex> lock(mutex_);
    const std::uint64_t id = nextId_++;
    const auto now = Clock::now();
    jobs_.emplace(id, Entry{std::move(job), due, now + lockTtl_, kFirstRetry});
    startLocked();
    return id;
  }

  // Starts the thread on first use, and has it look at the jobs again.
  void startLocked() {
    if (!thread_.joinable()) {
      thread_ = std::thread([this] { run(); });
    }
    wake_.notify_all();
  }

  void run() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      auto next = Clock::time_point::max();
      for (const auto& entry : jobs_) {
        next = std::min(next, entry.second.due);
      }
      if (next == Clock::time_point::max()) {
        wake_.wait(lock);
        continue;
      }
      if (next > Clock::now() && wake_.wait_until(lock, next) == std::cv_status::no_timeout) {
        continue; // a job was added or the renewer is stopping: look again
      }
      const auto now = Clock::now();
      std::vector<std::uint64_t> ids;
      std::vector<LeaseJob> batch;
      for (auto it = jobs_.begin(); it != jobs_.end();) {
        Entry& e = it->second;
        if (e.job.release && now >= e.giveUp) {
          it = jobs_.erase(it); // expired by itself
          continue;
        }
        // Renewals due within half a period go now too: early is harmless, and leases taken
        // together are then renewed together.
        if (e.due <= now || (!e.job.release && e.due <= now + period_ / 2)) {
          ids.push_back(it->first);
          batch.push_back(e.job);
          if (e.job.release) {
            e.due = now + e.retry;
            e.retry = std::min(e.retry * 2, period_);
          } else {
            e.due = now + period_;
          }
        }
        ++it;
      }
      lock.unlock(); // Redis calls without the lock: loads may finish meanwhile
      const std::vector<bool> finished = send_(batch);
      lock.lock();
      for (std::size_t i = 0; i < ids.size() && i < finished.size(); ++i) {
        if (finished[i]) {
          jobs_.erase(ids[i]);
        }
      }
    }
  }

  Send send_;
  const std::chrono::milliseconds period_;
  const std::chrono::milliseconds lockTtl_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::uint64_t, Entry> jobs_;
  std::uint64_t nextId_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

} // namespace cacheaside::detail
