#pragma once
/// \file near/store.hpp
/// NearStore<T>: the in-process tier of a near cache. Holds decoded values as
/// std::shared_ptr<const T>, bounded by entries and by bytes, in shards with a reader-writer lock
/// each: a hit takes one shard's lock shared and moves nothing. Eviction is S3-FIFO (Yang et al.,
/// SOSP 2023): new keys enter a small FIFO; keys read again there move to the main FIFO, the
/// others leave and are remembered in a ghost FIFO, so that a key coming back soon goes straight
/// to the main one. A hit only raises a 2-bit counter, which is why reads never take a write lock
/// (an LRU must relink its list on every hit). benchmarks/near_eviction.cpp compares it with LRU.
///
/// Coherence: erase() and clear() win against a concurrent install(). A reader takes a Ticket
/// before it reads Redis; install() refuses when the key's sequence or the store's epoch moved
/// since, so a value read before an invalidation is never installed after it.

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace cacheaside::near {

/// Bounds of a NearStore.
struct NearStoreOptions {
  /// Most entries held. Positive; default 10,000.
  std::size_t maxEntries = 10000;
  /// Most bytes held, counting each entry's charge (see NearStore::install). Positive; default
  /// 64 MiB.
  std::size_t maxBytes = std::size_t{64} << 20;
  /// Shards (rounded up to a power of two, at most 256). Default 16.
  std::size_t shards = 16;

  /// Throws std::invalid_argument naming the first field out of range.
  void validate() const {
    if (maxEntries == 0 || maxBytes == 0) {
      throw std::invalid_argument(
          "cacheaside: near cache maxEntries and maxBytes must be positive");
    }
    if (shards == 0 || shards > 256) {
      throw std::invalid_argument("cacheaside: near cache shards must be in [1, 256]");
    }
  }
};

/// What a NearStore holds and did, since it was built.
struct NearStoreCounters {
  /// Entries now.
  std::size_t entries = 0;
  /// Bytes charged now.
  std::size_t bytes = 0;
  /// Entries removed to stay within the bounds.
  std::uint64_t evictions = 0;
  /// Installs refused because the key was invalidated (or the store cleared) since the ticket.
  std::uint64_t refused = 0;
};

/// The in-process tier. Thread-safe.
template <typename T> class NearStore {
public:
  /// The clock of expiry times.
  using Clock = std::chrono::steady_clock;
  /// A held value.
  using Value = std::shared_ptr<const T>;

  /// Fixed per-entry overhead added to each charge: the node, the index slot, the ghost slot.
  static constexpr std::size_t kEntryOverhead = 128;

  /// Taken before reading Redis; install() compares it.
  struct Ticket {
    /// The key's invalidation sequence.
    std::uint64_t sequence = 0;
    /// The store's clear() epoch.
    std::uint64_t epoch = 0;
  };

  /// Throws std::invalid_argument when options.validate() does.
  explicit NearStore(NearStoreOptions options)
      : options_((options.validate(), options)), shardCount_(roundUp(options_.shards)),
        shards_(shardCount_) {
    const std::size_t n = shardCount_;
    for (auto& s : shards_) {
      s.maxEntries = std::max<std::size_t>(1, options_.maxEntries / n);
      s.maxBytes = std::max<std::size_t>(1, options_.maxBytes / n);
    }
  }

  NearStore(const NearStore&) = delete;
  NearStore& operator=(const NearStore&) = delete;

  /// The value held for key, unless none is or it expired by now.
  Value find(std::string_view key, Clock::time_point now) const {
    const std::size_t h = hash(key);
    const Shard& s = shardOf(h);
    std::shared_lock<std::shared_mutex> lock(s.mutex);
    const auto it = s.index.find(key);
    if (it == s.index.end()) {
      return nullptr;
    }
    const Node& n = *it->second;
    if (n.expires <= now) {
      return nullptr;
    }
    const std::uint8_t f = n.freq.load(std::memory_order_relaxed);
    if (f < 3) {
      n.freq.store(static_cast<std::uint8_t>(f + 1), std::memory_order_relaxed);
    }
    return n.value;
  }

  /// The ticket for key now: take it before reading the value from Redis.
  Ticket ticket(std::string_view key) const noexcept {
    Ticket t;
    t.epoch = epoch_.load(std::memory_order_acquire);
    t.sequence = sequenceOf(hash(key)).load(std::memory_order_acquire);
    return t;
  }

  /// The key's invalidation sequence now (raised by each erase() of a key of its stripe).
  std::uint64_t sequence(std::string_view key) const noexcept {
    return sequenceOf(hash(key)).load();
  }

  /// Holds value for key until expires, charged bytes + key size + kEntryOverhead, unless the
  /// key was erased or the store cleared since ticket (returns false, counted as refused).
  /// Replaces what the key held. Evicts other entries to stay within the bounds; an entry larger
  /// than a shard's share of maxBytes is not held.
  bool install(std::string_view key, const Ticket& ticket, Value value, std::size_t bytes,
               Clock::time_point expires) {
    const std::size_t h = hash(key);
    Shard& s = shardOf(h);
    const std::size_t charge = bytes + key.size() + kEntryOverhead;
    std::unique_lock<std::shared_mutex> lock(s.mutex);
    if (sequenceOf(h).load(std::memory_order_acquire) != ticket.sequence ||
        epoch_.load(std::memory_order_acquire) != ticket.epoch) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    removeLocked(s, key);
    if (charge > s.maxBytes) {
      return false;
    }
    const bool wasGhost = s.ghosts.erase(h) != 0;
    std::list<Node>& queue = wasGhost ? s.main : s.small;
    queue.emplace_front(std::string(key), std::move(value), charge, expires, wasGhost);
    auto node = queue.begin();
    s.index.emplace(std::string_view(node->key), node);
    s.bytes += charge;
    (wasGhost ? s.mainBytes : s.smallBytes) += charge;
    entries_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(charge, std::memory_order_relaxed);
    while (s.index.size() > s.maxEntries || s.bytes > s.maxBytes) {
      evictOne(s);
    }
    return true;
  }

  /// Removes what key holds, and refuses the installs of tickets taken before.
  void erase(std::string_view key) {
    const std::size_t h = hash(key);
    Shard& s = shardOf(h);
    sequenceOf(h).fetch_add(1); // before the lock (see install()); seq_cst for waiters
    std::unique_lock<std::shared_mutex> lock(s.mutex);
    removeLocked(s, key);
  }

  /// Removes everything, and refuses the installs of every ticket taken before.
  void clear() {
    epoch_.fetch_add(1, std::memory_order_acq_rel);
    for (auto& s : shards_) {
      std::list<Node> small, main;
      {
        std::unique_lock<std::shared_mutex> lock(s.mutex);
        entries_.fetch_sub(s.index.size(), std::memory_order_relaxed);
        bytes_.fetch_sub(s.bytes, std::memory_order_relaxed);
        s.index.clear();
        small.swap(s.small);
        main.swap(s.main);
        s.bytes = s.smallBytes = s.mainBytes = 0;
      } // the values are released outside the lock
    }
  }

  /// Entries, bytes and counters now.
  NearStoreCounters counters() const noexcept {
    NearStoreCounters c;
    c.entries = entries_.load(std::memory_order_relaxed);
    c.bytes = bytes_.load(std::memory_order_relaxed);
    c.evictions = evictions_.load(std::memory_order_relaxed);
    c.refused = refused_.load(std::memory_order_relaxed);
    return c;
  }

  /// The bounds.
  const NearStoreOptions& options() const noexcept { return options_; }

private:
  struct Node {
    Node(std::string k, Value v, std::size_t c, Clock::time_point e, bool m)
        : key(std::move(k)), value(std::move(v)), charge(c), expires(e), inMain(m) {}
    std::string key;
    Value value;
    std::size_t charge;
    Clock::time_point expires;
    bool inMain;
    mutable std::atomic<std::uint8_t> freq{0};
  };

  struct Shard {
    mutable std::shared_mutex mutex;
    std::list<Node> small; // front: newest
    std::list<Node> main;
    std::unordered_map<std::string_view, typename std::list<Node>::iterator> index;
    std::unordered_set<std::size_t> ghosts; // hashes of keys evicted from small unread
    std::deque<std::size_t> ghostOrder;
    std::size_t bytes = 0, smallBytes = 0, mainBytes = 0;
    std::size_t maxEntries = 0, maxBytes = 0;
  };

  static constexpr std::size_t kStripes = 4096;

  static std::size_t roundUp(std::size_t n) {
    std::size_t p = 1;
    while (p < n) {
      p <<= 1;
    }
    return p;
  }

  static std::size_t hash(std::string_view key) noexcept {
    return std::hash<std::string_view>{}(key);
  }

  Shard& shardOf(std::size_t h) noexcept { return shards_[(h >> 8) & (shardCount_ - 1)]; }
  const Shard& shardOf(std::size_t h) const noexcept {
    return shards_[(h >> 8) & (shardCount_ - 1)];
  }
  std::atomic<std::uint64_t>& sequenceOf(std::size_t h) const noexcept {
    return sequences_[h % kStripes];
  }

  void removeLocked(Shard& s, std::string_view key) {
    const auto it = s.index.find(key);
    if (it == s.index.end()) {
      return;
    }
    const auto node = it->second;
    s.index.erase(it);
    drop(s, node);
  }

  void drop(Shard& s, typename std::list<Node>::iterator node) {
    s.bytes -= node->charge;
    (node->inMain ? s.mainBytes : s.smallBytes) -= node->charge;
    entries_.fetch_sub(1, std::memory_order_relaxed);
    bytes_.fetch_sub(node->charge, std::memory_order_relaxed);
    (node->inMain ? s.main : s.small).erase(node);
  }

  // S3-FIFO: evict from the small queue while it holds more than a tenth of the bytes (or the
  // main queue is empty), else from the main one.
  void evictOne(Shard& s) {
    if (!s.small.empty() && (s.smallBytes * 10 >= s.bytes || s.main.empty())) {
      evictSmall(s);
    } else {
      evictMain(s);
    }
  }

  void evictSmall(Shard& s) {
    auto node = std::prev(s.small.end());
    if (node->freq.load(std::memory_order_relaxed) > 0) {
      // Read again while in the small queue: promote.
      node->freq.store(0, std::memory_order_relaxed);
      node->inMain = true;
      s.smallBytes -= node->charge;
      s.mainBytes += node->charge;
      s.main.splice(s.main.begin(), s.small, node);
      return;
    }
    const std::size_t h = hash(node->key);
    s.index.erase(std::string_view(node->key));
    drop(s, node);
    evictions_.fetch_add(1, std::memory_order_relaxed);
    if (s.ghosts.insert(h).second) {
      s.ghostOrder.push_back(h);
    }
    while (s.ghostOrder.size() > s.maxEntries) {
      s.ghosts.erase(s.ghostOrder.front());
      s.ghostOrder.pop_front();
    }
  }

  void evictMain(Shard& s) {
    // Each pass lowers a counter; at most 4 passes over the queue find an entry at zero.
    for (;;) {
      auto node = std::prev(s.main.end());
      const std::uint8_t f = node->freq.load(std::memory_order_relaxed);
      if (f > 0) {
        node->freq.store(static_cast<std::uint8_t>(f - 1), std::memory_order_relaxed);
        s.main.splice(s.main.begin(), s.main, node);
        continue;
      }
      s.index.erase(std::string_view(node->key));
      drop(s, node);
      evictions_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }

  const NearStoreOptions options_;
  const std::size_t shardCount_;
  std::vector<Shard> shards_;
  mutable std::array<std::atomic<std::uint64_t>, kStripes> sequences_{};
  std::atomic<std::uint64_t> epoch_{0};
  std::atomic<std::size_t> entries_{0};
  std::atomic<std::size_t> bytes_{0};
  std::atomic<std::uint64_t> evictions_{0};
  std::atomic<std::uint64_t> refused_{0};
};

} // namespace cacheaside::near
