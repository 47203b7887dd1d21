#pragma once
/// \file near/cluster_feed.hpp
/// HiredisClusterInvalidationFeed: the invalidation feed of a near cache over a Redis Cluster.
/// Each master reports changes only to the keys it holds, so the feed runs one
/// HiredisInvalidationFeed per master (tracking in broadcasting mode, redirected to the node
/// connection's own subscription, as near/hiredis_feed.hpp does on one server) and reports to
/// its listeners as one feed:
///
/// - up only while every master of the slot map has its feed up; a node's feed lost reports
///   down() (the near tiers flush and read through Redis until it is back);
/// - a slot map change seen by the cluster client (a reload that differs, a MOVED reply) flushes
///   the near tiers; a master the feed does not watch yet (a new node, a promoted replica, the
///   target of an ASK) reports down() until its feed is up; a master gone from the map is let go;
/// - the heartbeat confirmed to listeners is the oldest of the nodes' heartbeats.
///
/// A node whose feed stays down makes the feed ask the client for a fresh slot map every
/// reconnectPause, so that a failover is seen without traffic. Link cacheaside::hiredis.

#include <cacheaside/client/hiredis_cluster.hpp>
#include <cacheaside/detail/fork_generation.hpp>
#include <cacheaside/near/hiredis_feed.hpp>
#include <cacheaside/near/invalidation.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cacheaside::near {

/// How a HiredisClusterInvalidationFeed watches the masters.
struct ClusterFeedOptions {
  /// The key namespaces of the caches that will attach (CacheOptions::keyNamespace). At least
  /// one.
  std::vector<std::string> namespaces;
  /// Each node feed's PING interval. Positive; default 100 ms.
  std::chrono::milliseconds pingInterval = std::chrono::milliseconds(100);
  /// A node's PING unanswered for this long counts as its feed lost. Positive; default 50 ms.
  std::chrono::milliseconds lagLimit = std::chrono::milliseconds(50);
  /// Pause before a node feed reconnects, and between slot map reloads while one is down.
  /// Positive; default 100 ms.
  std::chrono::milliseconds reconnectPause = std::chrono::milliseconds(100);
};

/// What a cluster feed has done since it was built.
struct ClusterFeedCounters {
  /// Slot map changes that flushed the listeners.
  std::uint64_t topologyFlushes = 0;
  /// Times the feed came up (every master's feed up) and went down.
  std::uint64_t ups = 0, downs = 0;
  /// Node feeds started (one per master, again after a topology change brings it back).
  std::uint64_t nodeFeeds = 0;
};

/// An InvalidationFeed over the masters of a Redis Cluster, as HiredisClusterClient sees them.
/// Starts its thread at construction.
class HiredisClusterInvalidationFeed final : public InvalidationFeed,
                                             private ClusterTopologyListener {
public:
  /// Watches the masters of client (borrowed: it must outlive the feed), connecting to each
  /// with client's node options. Throws std::invalid_argument for options out of range.
  HiredisClusterInvalidationFeed(HiredisClusterClient& client, ClusterFeedOptions options)
      : client_(client), options_(std::move(options)),
        generation_(detail::currentForkGeneration()) {
    using std::chrono::milliseconds;
    if (options_.namespaces.empty()) {
      throw std::invalid_argument("cacheaside: ClusterFeedOptions::namespaces must not be empty");
    }
    if (options_.pingInterval <= milliseconds::zero() ||
        options_.lagLimit <= milliseconds::zero() ||
        options_.reconnectPause <= milliseconds::zero()) {
      throw std::invalid_argument("cacheaside: ClusterFeedOptions durations must be positive");
    }
    for (const auto& ns : options_.namespaces) {
      prefixes_.push_back(trackingPrefix(ns));
    }
    client_.addTopologyListener(*this);
    thread_ = std::thread([this] { run(); });
  }

  HiredisClusterInvalidationFeed(const HiredisClusterInvalidationFeed&) = delete;
  HiredisClusterInvalidationFeed& operator=(const HiredisClusterInvalidationFeed&) = delete;

  /// Stops watching and closes every node's feed. Every listener must have detached.
  ~HiredisClusterInvalidationFeed() override {
    if (detail::currentForkGeneration() != generation_) {
      // A forked child has neither this thread nor the node feeds' threads: let them go.
      (void)new std::thread(std::move(thread_));
      for (auto& n : nodes_) {
        (void)n.second.release();
      }
      return;
    }
    client_.removeTopologyListener(*this);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    thread_.join();
    std::map<std::string, std::unique_ptr<Node>> nodes;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      nodes.swap(nodes_);
    }
    nodes.clear(); // each node's feed stops its thread
  }

  void attach(std::string_view prefix, InvalidationListener& listener) override {
    if (std::find(prefixes_.begin(), prefixes_.end(), prefix) == prefixes_.end()) {
      throw std::invalid_argument("cacheaside: the invalidation feed does not track the prefix '" +
                                  detail::printableKey(prefix) +
                                  "': add its namespace to ClusterFeedOptions::namespaces");
    }
    std::lock_guard<std::mutex> lock(mutex_);
    listeners_.push_back({std::string(prefix), &listener});
    if (up_) {
      listener.up();
      listener.confirmed(oldestConfirmation());
    }
  }

  void detach(InvalidationListener& listener) override {
    std::lock_guard<std::mutex> lock(mutex_);
    listeners_.erase(std::remove_if(listeners_.begin(), listeners_.end(),
                                    [&](const Entry& e) { return e.listener == &listener; }),
                     listeners_.end());
  }

  /// Whether every master's feed is up now.
  bool isUp() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return up_;
  }

  /// Waits until the feed is up, for at most timeout; returns whether it is.
  bool waitUntilUp(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return up_; });
  }

  /// The masters watched now ("host:port").
  std::vector<std::string> watched() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::vector<std::string>(wanted_.begin(), wanted_.end());
  }

  /// The client id of the feed connection to master address while it is up (for CLIENT KILL ID
  /// in tests), else 0.
  long long clientId(const std::string& address) const {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = nodes_.find(address);
    return it == nodes_.end() ? 0 : it->second->feed->clientId();
  }

  /// Counters so far.
  ClusterFeedCounters counters() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return counters_;
  }

private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    std::string prefix;
    InvalidationListener* listener;
  };

  // One master's feed, and what it last reported (guarded by the owner's mutex_).
  struct Node final : InvalidationListener {
    Node(HiredisClusterInvalidationFeed& o, std::string a) : owner(o), address(std::move(a)) {}
    ~Node() override {
      if (feed) {
        feed->detach(*this);
      }
    }
    void invalidated(std::string_view redisKey) override { owner.nodeInvalidated(redisKey); }
    void flushed() override { owner.nodeFlushed(); }
    void up() override { owner.nodeUp(*this); }
    void down() override { owner.nodeDown(*this); }
    void confirmed(Clock::time_point asOf) override { owner.nodeConfirmed(*this, asOf); }

    HiredisClusterInvalidationFeed& owner;
    const std::string address;
    std::unique_ptr<HiredisInvalidationFeed> feed;
    bool up_ = false;
    Clock::time_point confirmedAt{};
    Clock::time_point downSince = Clock::now();
  };

  // The feed's thread: learns the masters, starts and stops node feeds to match, reloads the
  // slot map while a node stays down. Every wait is bounded by reconnectPause.
  void run() {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        if (stopping_) {
          return;
        }
      }
      if (!known_.load()) {
        try {
          const auto masters = client_.masters();
          if (!masters.empty()) {
            topologyChanged(masters, true);
          }
        } catch (const std::exception&) {
          // No node answered: retried after the pause.
        }
      }
      reconcile();
      bool reload = false;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait_for(lock, options_.reconnectPause,
                          [&] { return stopping_ || reconcileWanted_; });
        const auto now = Clock::now();
        for (const auto& address : wanted_) {
          const auto it = nodes_.find(address);
          if (it != nodes_.end() && !it->second->up_ &&
              now - it->second->downSince >= options_.reconnectPause) {
            reload = true;
          }
        }
      }
      if (reload) {
        try {
          client_.reloadSlots(); // a topology change calls topologyChanged()
        } catch (const std::exception&) {
          // The cluster is unreachable: the node feeds keep retrying.
        }
      }
    }
  }

  // Starts a feed for each wanted master without one, stops those of masters no longer wanted.
  // Node feeds are built and destroyed outside mutex_: their threads call into it.
  void reconcile() {
    std::vector<std::string> missing;
    std::vector<std::unique_ptr<Node>> gone;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      reconcileWanted_ = false;
      for (const auto& address : wanted_) {
        if (nodes_.count(address) == 0) {
          missing.push_back(address);
        }
      }
      for (auto it = nodes_.begin(); it != nodes_.end();) {
        if (wanted_.count(it->first) == 0) {
          gone.push_back(std::move(it->second));
          it = nodes_.erase(it);
        } else {
          ++it;
        }
      }
    }
    gone.clear();
    for (const auto& address : missing) {
      HiredisFeedOptions f;
      f.redis = client_.options().node;
      try {
        const auto [host, port] = detail::splitAddress(address, "a node address");
        f.redis.host = host;
        f.redis.port = port;
      } catch (const std::invalid_argument&) {
        continue; // not host:port: the map never names such a node
      }
      f.namespaces = options_.namespaces;
      f.pingInterval = options_.pingInterval;
      f.lagLimit = options_.lagLimit;
      f.reconnectPause = options_.reconnectPause;
      auto node = std::make_unique<Node>(*this, address);
      try {
        node->feed = std::make_unique<HiredisInvalidationFeed>(std::move(f));
      } catch (const std::exception&) {
        continue; // no thread or pipe to spare now: the next pass tries again, the feed stays down
      }
      Node* raw = node.get();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        nodes_[address] = std::move(node);
        ++counters_.nodeFeeds;
      }
      for (const auto& prefix : prefixes_) {
        raw->feed->attach(prefix, *raw);
      }
    }
  }

  void topologyChanged(const std::vector<std::string>& masters, bool slotsMoved) override {
    std::lock_guard<std::mutex> lock(mutex_);
    std::set<std::string> next(masters.begin(), masters.end());
    if (!slotsMoved) {
      next.insert(wanted_.begin(), wanted_.end()); // an ASK target adds a node, drops none
      if (next == wanted_) {
        return; // a node already watched: its feed reports the key's changes there
      }
    }
    known_.store(true);
    if (next != wanted_) {
      wanted_ = std::move(next);
      reconcileWanted_ = true;
    }
    ++counters_.topologyFlushes;
    for (const Entry& e : listeners_) {
      e.listener->flushed(); // a moved slot's keys were read from a node that no longer has them
    }
    settle(); // down until a new master's feed is up
    changed_.notify_all();
  }

  void nodeInvalidated(std::string_view redisKey) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry& e : listeners_) {
      if (redisKey.substr(0, e.prefix.size()) == e.prefix) {
        e.listener->invalidated(redisKey);
      }
    }
  }

  void nodeFlushed() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const Entry& e : listeners_) {
      e.listener->flushed();
    }
  }

  void nodeUp(Node& node) {
    std::lock_guard<std::mutex> lock(mutex_);
    node.up_ = true;
    settle();
  }

  void nodeDown(Node& node) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (node.up_) {
      node.downSince = Clock::now();
    }
    node.up_ = false;
    if (wanted_.count(node.address) == 0) {
      return; // a node let go: its loss changes nothing
    }
    if (up_) {
      up_ = false;
      ++counters_.downs;
    }
    for (const Entry& e : listeners_) {
      e.listener->down();
    }
    changed_.notify_all();
  }

  void nodeConfirmed(Node& node, Clock::time_point asOf) {
    std::lock_guard<std::mutex> lock(mutex_);
    node.confirmedAt = asOf;
    if (up_) {
      const auto oldest = oldestConfirmation();
      for (const Entry& e : listeners_) {
        e.listener->confirmed(oldest);
      }
    }
  }

  // Under mutex_: reports up() when every wanted master's feed is up, down() when one is not.
  void settle() {
    bool all = !wanted_.empty();
    for (const auto& address : wanted_) {
      const auto it = nodes_.find(address);
      if (it == nodes_.end() || !it->second->up_) {
        all = false;
        break;
      }
    }
    if (all == up_) {
      return;
    }
    up_ = all;
    if (all) {
      ++counters_.ups;
      const auto oldest = oldestConfirmation();
      for (const Entry& e : listeners_) {
        e.listener->up();
        e.listener->confirmed(oldest);
      }
    } else {
      ++counters_.downs;
      for (const Entry& e : listeners_) {
        e.listener->down();
      }
    }
    changed_.notify_all();
  }

  // Under mutex_: the oldest heartbeat among the wanted masters.
  Clock::time_point oldestConfirmation() const {
    auto oldest = Clock::time_point::max();
    for (const auto& address : wanted_) {
      const auto it = nodes_.find(address);
      oldest = it == nodes_.end() ? Clock::time_point{} : std::min(oldest, it->second->confirmedAt);
    }
    return oldest == Clock::time_point::max() ? Clock::time_point{} : oldest;
  }

  HiredisClusterClient& client_;
  const ClusterFeedOptions options_;
  const std::uint64_t generation_;
  std::vector<std::string> prefixes_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  bool up_ = false;
  bool reconcileWanted_ = false;
  std::atomic<bool> known_{false}; // the masters were learned once
  std::set<std::string> wanted_;
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::vector<Entry> listeners_;
  ClusterFeedCounters counters_;
  std::thread thread_;
};

} // namespace cacheaside::near
