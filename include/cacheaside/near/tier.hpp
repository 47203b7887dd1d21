#pragma once
/// \file near/tier.hpp
/// NearTier<T>: what CacheAside consults before Redis when its near cache is on. A NearStore
/// listening to an invalidation feed: an invalidation erases the key (and wakes the callers
/// waiting for another caller's load of it), a flush clears everything, and while the feed is
/// down the tier is cleared and bypassed. Keys are the Redis value keys ("<ns>:{key}").

#include <cacheaside/near/invalidation.hpp>
#include <cacheaside/near/options.hpp>
#include <cacheaside/near/store.hpp>
#include <cacheaside/store/keys.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cacheaside {

/// What a cache's near tier did since it was built (CacheAside::nearStats()).
struct NearStats {
  /// Reads served from the near tier.
  std::uint64_t hits = 0;
  /// Values installed after a Redis hit.
  std::uint64_t installs = 0;
  /// Installs refused because an invalidation (or flush) overtook the read.
  std::uint64_t refused = 0;
  /// Entries evicted to stay within the bounds.
  std::uint64_t evictions = 0;
  /// Invalidations received from the feed for this cache's keys.
  std::uint64_t invalidations = 0;
  /// Flushes: FLUSHALL/FLUSHDB messages, and feed losses (each clears the tier).
  std::uint64_t flushes = 0;
  /// Entries held now.
  std::size_t entries = 0;
  /// Bytes charged now.
  std::size_t bytes = 0;
  /// Whether the tier is bypassed now (feed down, or a forked child).
  bool bypassed = true;
  /// Reads sent to Redis because the feed's last heartbeat was older than maxFeedSilence.
  std::uint64_t silentMisses = 0;
};

namespace near {

/// The near tier of a CacheAside<T>. Thread-safe.
template <typename T> class NearTier final : public InvalidationListener {
public:
  /// The clock of expiry times.
  using Clock = typename NearStore<T>::Clock;
  /// Taken before a Redis read, handed back to offer().
  using Ticket = typename NearStore<T>::Ticket;

  /// Attaches to options.feed for the keys of keyNamespace.
  NearTier(const NearCacheOptions& options, std::string_view keyNamespace)
      : feed_(options.feed), store_(options.bounds), maxTtl_(options.maxTtl),
        maxSilenceNs_(std::chrono::nanoseconds(options.maxFeedSilence).count()),
        namespace_(keyNamespace) {
    feed_->attach(trackingPrefix(keyNamespace), *this);
  }

  ~NearTier() override {
    if (!forked_.load()) {
      feed_->detach(*this); // in a forked child the feed's lock may be held by a thread it lacks
    }
  }

  NearTier(const NearTier&) = delete;
  NearTier& operator=(const NearTier&) = delete;

  /// The value held for the Redis key, or null (also while bypassed).
  std::shared_ptr<const T> find(std::string_view redisKey) {
    if (bypassed_.load(std::memory_order_acquire)) {
      return nullptr;
    }
    const auto now = Clock::now();
    const auto nowNs =
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
    if (nowNs - confirmedNs_.load(std::memory_order_acquire) > maxSilenceNs_) {
      silent_.fetch_add(1, std::memory_order_relaxed);
      return nullptr; // the feed has not confirmed recently: a change may be unreported
    }
    auto v = store_.find(redisKey, now);
    if (v) {
      hitStripe().fetch_add(1, std::memory_order_relaxed);
    }
    return v;
  }

  /// Take before reading redisKey from Redis.
  Ticket ticket(std::string_view redisKey) const noexcept { return store_.ticket(redisKey); }

  /// Installs a value read from Redis, for at most ttl, unless the key was invalidated since
  /// ticket or the tier is bypassed.
  void offer(std::string_view redisKey, const Ticket& ticket, const T& value, std::size_t bytes,
             std::chrono::milliseconds ttl) {
    ttl = std::min(ttl, maxTtl_);
    if (ttl <= std::chrono::milliseconds::zero() || bypassed_.load(std::memory_order_acquire)) {
      return;
    }
    if (store_.install(redisKey, ticket, std::make_shared<const T>(value), bytes,
                       Clock::now() + ttl)) {
      installs_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  /// Forgets redisKey now (this process wrote it).
  void evict(std::string_view redisKey) {
    store_.erase(redisKey);
    wake(redisKey);
  }

  /// A forked child has no feed thread: bypass for good.
  void forked() noexcept {
    forked_.store(true);
    bypassed_.store(true);
  }

  /// A mark of the user key's invalidations, taken before a look at Redis.
  std::uint64_t mark(std::string_view key) const {
    return store_.sequence(store::valueKey(namespace_, key));
  }

  /// Sleeps up to pause, or until the key is invalidated after mark (its loader's fill).
  void wait(std::string_view key, std::uint64_t mark, std::chrono::milliseconds pause) {
    if (bypassed_.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(pause);
      return;
    }
    const std::string redisKey = store::valueKey(namespace_, key);
    Waiters& w = waitersOf(redisKey);
    w.count.fetch_add(1); // seq_cst: against evict's sequence bump, Dekker-style
    {
      std::unique_lock<std::mutex> lock(w.mutex);
      w.cv.wait_for(lock, pause, [&] {
        return store_.sequence(redisKey) != mark || bypassed_.load(std::memory_order_acquire);
      });
    }
    w.count.fetch_sub(1);
  }

  /// wait() for several Redis value keys at once (a batch): sleeps up to pause, or until one
  /// of marks' keys is invalidated after its mark (the sequence of a ticket() taken before its
  /// look). Woken by every invalidation of the tier, it looks at all of marks each time.
  void waitAny(const std::vector<std::pair<std::string_view, std::uint64_t>>& marks,
               std::chrono::milliseconds pause) {
    if (bypassed_.load(std::memory_order_acquire)) {
      std::this_thread::sleep_for(pause);
      return;
    }
    batchWaiters_.count.fetch_add(1); // seq_cst, as in wait()
    {
      std::unique_lock<std::mutex> lock(batchWaiters_.mutex);
      batchWaiters_.cv.wait_for(lock, pause, [&] {
        return bypassed_.load(std::memory_order_acquire) ||
               std::any_of(marks.begin(), marks.end(),
                           [&](const auto& m) { return store_.sequence(m.first) != m.second; });
      });
    }
    batchWaiters_.count.fetch_sub(1);
  }

  /// Counters and state now.
  NearStats stats() const noexcept {
    const NearStoreCounters c = store_.counters();
    NearStats s;
    for (const auto& h : hits_) {
      s.hits += h.n.load(std::memory_order_relaxed);
    }
    s.installs = installs_.load(std::memory_order_relaxed);
    s.refused = c.refused;
    s.evictions = c.evictions;
    s.invalidations = invalidations_.load(std::memory_order_relaxed);
    s.flushes = flushes_.load(std::memory_order_relaxed);
    s.entries = c.entries;
    s.bytes = c.bytes;
    s.bypassed = bypassed_.load(std::memory_order_relaxed);
    s.silentMisses = silent_.load(std::memory_order_relaxed);
    return s;
  }

  void invalidated(std::string_view redisKey) override {
    evict(redisKey);
    invalidations_.fetch_add(1, std::memory_order_release); // counted once it took effect
  }

  void flushed() override {
    store_.clear();
    wakeAll();
    flushes_.fetch_add(1, std::memory_order_release);
  }

  void up() override {
    store_.clear(); // whatever was read before the subscription may have changed unreported
    if (!forked_.load()) {
      bypassed_.store(false, std::memory_order_release);
    }
  }

  void confirmed(std::chrono::steady_clock::time_point asOf) override {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(asOf.time_since_epoch());
    confirmedNs_.store(ns.count(), std::memory_order_release);
  }

  void down() override {
    if (!bypassed_.exchange(true, std::memory_order_acq_rel)) {
      flushes_.fetch_add(1, std::memory_order_relaxed);
    }
    store_.clear();
    wakeAll(); // waiters fall back to polling
  }

private:
  struct Waiters {
    std::mutex mutex;
    std::condition_variable cv;
    std::atomic<int> count{0};
  };
  static constexpr std::size_t kWaiterStripes = 64;

  Waiters& waitersOf(std::string_view redisKey) {
    return waiters_[std::hash<std::string_view>{}(redisKey) % kWaiterStripes];
  }

  void wake(std::string_view redisKey) {
    notify(waitersOf(redisKey));
    notify(batchWaiters_);
  }

  void wakeAll() {
    for (auto& w : waiters_) {
      notify(w);
    }
    notify(batchWaiters_);
  }

  static void notify(Waiters& w) {
    if (w.count.load() == 0) {
      return;
    }
    { std::lock_guard<std::mutex> lock(w.mutex); } // a waiter is waiting, or sees the sequence
    w.cv.notify_all();
  }

  std::shared_ptr<InvalidationFeed> feed_;
  NearStore<T> store_;
  const std::chrono::milliseconds maxTtl_;
  const std::int64_t maxSilenceNs_;
  std::atomic<std::int64_t> confirmedNs_{0};
  std::atomic<std::uint64_t> silent_{0};
  const std::string namespace_;
  std::atomic<bool> bypassed_{true}; // until the feed reports up()
  std::atomic<bool> forked_{false};
  // Hits are counted in stripes, one cache line each: a shared counter would make every
  // thread's hit write the same line.
  struct alignas(64) HitStripe {
    std::atomic<std::uint64_t> n{0};
  };
  static constexpr std::size_t kHitStripes = 16;
  std::array<HitStripe, kHitStripes> hits_;
  std::atomic<std::uint64_t> installs_{0}, invalidations_{0}, flushes_{0};

  std::atomic<std::uint64_t>& hitStripe() noexcept {
    static std::atomic<std::size_t> nextThread{0};
    thread_local const std::size_t stripe = nextThread.fetch_add(1) % kHitStripes;
    return hits_[stripe].n;
  }
  std::array<Waiters, kWaiterStripes> waiters_;
  Waiters batchWaiters_; // waitAny(): woken by every key's invalidation
};

} // namespace near
} // namespace cacheaside
