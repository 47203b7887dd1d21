#pragma once
/// \file client/hiredis_cluster.hpp
/// RedisClient over a Redis Cluster: one HiredisClient pool per master, each command routed by
/// its key's hash slot. Link cacheaside::hiredis. Not included by cacheaside.hpp.
///
/// The slot map comes from CLUSTER SLOTS (Redis 3.0 and later, Valkey), asked of any known node
/// or seed. MOVED replies patch the map, re-route the command and refresh the whole map; ASK
/// replies send the command once more to the named node after ASKING; TRYAGAIN, CLUSTERDOWN and
/// nodes that cannot be connected to are retried after a short backoff. All of it happens within
/// one deadline per call (HiredisClusterOptions::callTimeout). A command is sent again only when
/// it certainly did not run: after a redirect or a TRYAGAIN / CLUSTERDOWN reply, or when no
/// connection could be opened; a connection lost after sending is reported, not retried.

#include <cacheaside/client/hiredis.hpp>
#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/detail/fork_generation.hpp>
#include <cacheaside/errors.hpp>
#include <cacheaside/store/keys.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace cacheaside {

/// Where and how HiredisClusterClient connects.
struct HiredisClusterOptions {
  /// Nodes to learn the slot map from, as "host:port" (IPv4 literal or host name); any one
  /// reachable node is enough. At least one.
  std::vector<std::string> seeds;
  /// Options for every node's pool: user, password, connectTimeout, commandTimeout (per node
  /// round trip), poolSize and poolWaitTimeout. host, port and unixSocket are ignored (the slot
  /// map names the nodes); db must be 0, the only database of a cluster.
  HiredisOptions node;
  /// Deadline for a whole call: every round trip, redirect, map refresh and backoff of it.
  /// Default 200 ms.
  std::chrono::milliseconds callTimeout = std::chrono::milliseconds(200);
  /// Most MOVED / ASK redirects one command follows within a call. Default 5.
  int maxRedirects = 5;
};

namespace detail {

// "host:port" -> (host, port); throws std::invalid_argument naming `what` on anything else.
inline std::pair<std::string, int> splitAddress(std::string_view address, const char* what) {
  const auto colon = address.rfind(':');
  int port = 0;
  if (colon != std::string_view::npos && colon > 0 && colon + 1 < address.size()) {
    for (std::size_t i = colon + 1; i < address.size(); ++i) {
      const char c = address[i];
      if (c < '0' || c > '9' || port > 65535) {
        port = -1;
        break;
      }
      port = port * 10 + (c - '0');
    }
  }
  if (port <= 0 || port > 65535) {
    throw std::invalid_argument(std::string("cacheaside: ") + what + " must be host:port, got '" +
                                std::string(address) + "'");
  }
  std::string host(address.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return {host, port};
}

// A cluster error reply's kind, from its first word.
enum class ClusterReply { Plain, Moved, Ask, TryAgain, Down };

inline ClusterReply classifyClusterReply(const Reply& reply) {
  if (!reply.isError()) {
    return ClusterReply::Plain;
  }
  const std::string_view s = reply.str;
  const auto startsWith = [&](std::string_view word) {
    return s.compare(0, word.size(), word) == 0 &&
           (s.size() == word.size() || s[word.size()] == ' ');
  };
  if (startsWith("MOVED")) {
    return ClusterReply::Moved;
  }
  if (startsWith("ASK")) {
    return ClusterReply::Ask;
  }
  if (startsWith("TRYAGAIN")) {
    return ClusterReply::TryAgain;
  }
  if (startsWith("CLUSTERDOWN")) {
    return ClusterReply::Down;
  }
  return ClusterReply::Plain;
}

// The "host:port" of a MOVED / ASK reply ("MOVED 3999 127.0.0.1:6381"), or empty.
inline std::string_view redirectTarget(const Reply& reply) {
  const std::string_view s = reply.str;
  const auto last = s.rfind(' ');
  const auto first = s.find(' ');
  if (last == std::string_view::npos || last == first) {
    return {};
  }
  return s.substr(last + 1);
}

} // namespace detail

/// Told by a HiredisClusterClient when the cluster's shape may have changed under it (a near
/// cache's invalidation feed watches every master: near/cluster_feed.hpp).
class ClusterTopologyListener {
public:
  virtual ~ClusterTopologyListener() = default;
  /// The slot map changed (a reload that differs from the last map, or a MOVED reply): masters
  /// are the map's nodes now ("host:port"). Or, with slotsMoved false, an ASK reply sent a
  /// command to masters.front(), which the map may not name yet. Called on the thread of the
  /// call that saw it, after the map was published and before the call returns.
  virtual void topologyChanged(const std::vector<std::string>& masters, bool slotsMoved) = 0;
};

/// A RedisClient over a Redis Cluster. Thread-safe. Every command goes to the master serving its
/// key's hash slot (a keyless command to any master); a pipeline is split by node, one round
/// trip per node in turn, and its replies come back in the caller's order. Every key of one
/// command must share a slot, as Redis Cluster requires (the cache's own commands do).
///
/// Failures: TimeoutError when the call's deadline passes (also while a slot's master is down
/// and not yet replaced), ConnectionError when a connection is lost after a command was sent,
/// PoolExhaustedError when a node's pool stays busy, as HiredisClient does. A command still
/// redirected after maxRedirects, or refused with TRYAGAIN / CLUSTERDOWN until the deadline,
/// returns that error reply.
///
/// fork(): a forked child starts with empty pools and relearns the slot map on its first call.
class HiredisClusterClient final : public RedisClient {
public:
  /// Checks the options; connects on first use. Throws std::invalid_argument for no seed, a seed
  /// that is not host:port, db other than 0, a non-positive callTimeout or maxRedirects, or node
  /// options HiredisClient rejects.
  explicit HiredisClusterClient(HiredisClusterOptions options) : options_(std::move(options)) {
    if (options_.seeds.empty()) {
      throw std::invalid_argument("cacheaside: HiredisClusterOptions::seeds must not be empty");
    }
    for (const std::string& seed : options_.seeds) {
      seeds_.push_back(detail::splitAddress(seed, "a cluster seed"));
    }
    if (options_.node.db != 0) {
      throw std::invalid_argument("cacheaside: a Redis Cluster has only database 0");
    }
    if (options_.callTimeout.count() <= 0 || options_.maxRedirects <= 0) {
      throw std::invalid_argument(
          "cacheaside: HiredisClusterOptions callTimeout and maxRedirects must be positive");
    }
    options_.node.unixSocket.clear();
    HiredisClient check(options_.node); // validates the node options now, not on first use
    state_.store(new State(detail::currentForkGeneration(), nullptr));
  }

  HiredisClusterClient(const HiredisClusterClient&) = delete;
  HiredisClusterClient& operator=(const HiredisClusterClient&) = delete;

  /// Closes every node's connections. No call may be in progress.
  ~HiredisClusterClient() override {
    State* state = state_.load();
    for (bool current = true; state != nullptr; current = false) {
      State* inherited = state->inherited;
      if (current || state->drained) {
        delete state;
      }
      state = inherited;
    }
  }

  /// Sends one command to its slot's master, following redirects within callTimeout.
  Reply command(const Command& command) override {
    std::vector<Reply> replies = run(&command, 1);
    return std::move(replies.front());
  }

  /// Sends the commands, grouped by node; returns their replies in the caller's order.
  std::vector<Reply> pipeline(const std::vector<Command>& commands) override {
    if (commands.empty()) {
      return {};
    }
    return run(commands.data(), commands.size());
  }

  /// The options the client was built with.
  const HiredisClusterOptions& options() const noexcept { return options_; }

  /// How many times the slot map was (re)loaded from a node: for tests and monitoring.
  std::uint64_t mapRefreshes() const noexcept { return refreshes_.load(std::memory_order_relaxed); }

  /// The masters of the slot map ("host:port"), loading it first when there is none (within
  /// callTimeout). Empty when no node gave a map.
  std::vector<std::string> masters() {
    State& state = currentState();
    if (!mapOf(state)) {
      refresh(state, Clock::now() + options_.callTimeout, true);
    }
    const auto map = mapOf(state);
    return map ? map->addresses : std::vector<std::string>{};
  }

  /// Reloads the slot map within callTimeout, unless it was reloaded less than 100 ms ago (a
  /// watcher that lost a node calls it: a failover may have replaced the node).
  void reloadSlots() {
    State& state = currentState();
    refresh(state, Clock::now() + options_.callTimeout, false);
  }

  /// Tells listener (borrowed until removed) of every topology change seen from now on, in
  /// this process (a forked child's calls tell no one).
  void addTopologyListener(ClusterTopologyListener& listener) {
    std::lock_guard<std::mutex> lock(topologyMutex_);
    topologyListeners_.push_back(&listener);
  }

  /// Stops telling listener; when it returns, no call to it is in progress.
  void removeTopologyListener(ClusterTopologyListener& listener) {
    std::lock_guard<std::mutex> lock(topologyMutex_);
    topologyListeners_.erase(
        std::remove(topologyListeners_.begin(), topologyListeners_.end(), &listener),
        topologyListeners_.end());
  }

private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kSlots = 16384;
  static constexpr std::uint16_t kNoNode = 0xFFFF;

  // Which node serves each slot. Immutable once published: readers keep a shared_ptr.
  struct SlotMap {
    std::array<std::uint16_t, kSlots> slot{};
    std::vector<HiredisClient*> nodes; // owned by the State
    std::vector<std::string> addresses;
  };

  // One process's clients and map. A forked child replaces it (see currentState).
  struct State {
    State(std::uint64_t forkGeneration, State* inheritedFrom)
        : generation(forkGeneration), inherited(inheritedFrom) {}
    const std::uint64_t generation;
    State* const inherited;
    bool drained = false; // an inherited state the child could lock: safe to destroy
    std::mutex mutex;
    std::map<std::string, std::unique_ptr<HiredisClient>> clients; // by "host:port", never erased
    std::shared_ptr<const SlotMap> map;
    Clock::time_point lastRefresh{};
    std::string refreshError; // why the last node asked for the map did not give it
    std::atomic<bool> refreshing{false};
  };

  // Where one command goes next.
  struct Route {
    HiredisClient* node = nullptr;
    bool asking = false;
    int redirects = 0;
  };

  State& currentState() {
    State* state = state_.load(std::memory_order_acquire);
    const std::uint64_t generation = detail::currentForkGeneration();
    if (state->generation == generation) {
      return *state;
    }
    // The parent's mutex may have been held at the fork: never wait for it. The child starts
    // over with new pools; the old state stays allocated until the client is destroyed, and is
    // destroyed then only if its mutex was free (a state locked forever is leaked instead).
    auto fresh = std::make_unique<State>(generation, state);
    State* expected = state;
    if (!state_.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
      return *expected;
    }
    if (state->mutex.try_lock()) {
      state->drained = true;
      state->mutex.unlock();
    }
    return *fresh.release();
  }

  HiredisClient* clientFor(State& state, const std::string& host, int port) {
    const std::string address = host + ":" + std::to_string(port);
    std::lock_guard<std::mutex> lock(state.mutex);
    auto& client = state.clients[address];
    if (!client) {
      HiredisOptions o = options_.node;
      o.host = host;
      o.port = port;
      client = std::make_unique<HiredisClient>(std::move(o));
    }
    return client.get();
  }

  std::shared_ptr<const SlotMap> mapOf(State& state) {
    std::lock_guard<std::mutex> lock(state.mutex);
    return state.map;
  }

  // The master of `key`'s slot per the map, or none (no map yet, or an unserved slot).
  static std::optional<Route> routeFor(const SlotMap* map, std::string_view key) {
    if (map == nullptr || map->nodes.empty()) {
      return std::nullopt;
    }
    std::uint16_t node = 0; // keyless: any master
    if (!key.empty()) {
      node = map->slot[store::hashSlot(key)];
      if (node == kNoNode) {
        return std::nullopt;
      }
    }
    return Route{map->nodes[node], false, 0};
  }

  // Points `key`'s slot at `address` (a MOVED reply), without waiting for a full refresh.
  // Returns the masters when the slot's master changed, else nothing.
  std::optional<std::vector<std::string>>
  patchSlot(State& state, std::string_view key, const std::string& address, HiredisClient* node) {
    std::lock_guard<std::mutex> lock(state.mutex);
    if (state.map) {
      const std::uint16_t now = state.map->slot[store::hashSlot(key)];
      if (now != kNoNode && state.map->addresses[now] == address) {
        return std::nullopt;
      }
    }
    auto patched = state.map ? std::make_shared<SlotMap>(*state.map) : std::make_shared<SlotMap>();
    if (!state.map) {
      patched->slot.fill(kNoNode);
    }
    auto at = std::find(patched->addresses.begin(), patched->addresses.end(), address);
    if (at == patched->addresses.end()) {
      patched->addresses.push_back(address);
      patched->nodes.push_back(node);
      at = patched->addresses.end() - 1;
    }
    patched->slot[store::hashSlot(key)] =
        static_cast<std::uint16_t>(at - patched->addresses.begin());
    state.map = std::move(patched);
    return state.map->addresses;
  }

  // Whether two maps send every slot to the same address.
  static bool sameSlots(const SlotMap& a, const SlotMap& b) {
    if (a.addresses == b.addresses) {
      return a.slot == b.slot;
    }
    for (std::size_t s = 0; s < kSlots; ++s) {
      const bool an = a.slot[s] == kNoNode;
      const bool bn = b.slot[s] == kNoNode;
      if (an != bn || (!an && a.addresses[a.slot[s]] != b.addresses[b.slot[s]])) {
        return false;
      }
    }
    return true;
  }

  // Tells the topology listeners, on no lock of the state's.
  void tellTopology(const std::vector<std::string>& masters, bool slotsMoved) {
    if (detail::currentForkGeneration() != generation_) {
      return; // the parent's listeners (and their threads) are not this process's
    }
    std::lock_guard<std::mutex> lock(topologyMutex_);
    for (ClusterTopologyListener* l : topologyListeners_) {
      l->topologyChanged(masters, slotsMoved);
    }
  }

  // Reloads the whole map from the first node that answers CLUSTER SLOTS, unless another thread
  // is at it or it was reloaded less than 100 ms ago (force: only the first condition).
  void refresh(State& state, Clock::time_point deadline, bool force) {
    {
      std::lock_guard<std::mutex> lock(state.mutex);
      if (!force && state.map &&
          Clock::now() - state.lastRefresh < std::chrono::milliseconds(100)) {
        return;
      }
    }
    if (state.refreshing.exchange(true, std::memory_order_acq_rel)) {
      return;
    }
    struct Done {
      std::atomic<bool>& flag;
      ~Done() { flag.store(false, std::memory_order_release); }
    } done{state.refreshing};

    std::vector<std::pair<std::string, int>> candidates;
    if (const auto map = mapOf(state)) {
      for (const std::string& address : map->addresses) {
        candidates.push_back(detail::splitAddress(address, "a node address"));
      }
    }
    candidates.insert(candidates.end(), seeds_.begin(), seeds_.end());
    const std::vector<Command> ask{Command{{}, {"CLUSTER", "SLOTS"}}};
    for (const auto& [host, port] : candidates) {
      if (Clock::now() >= deadline) {
        return;
      }
      HiredisClient* node = clientFor(state, host, port);
      std::vector<Reply> replies;
      try {
        bool written = false;
        replies = node->exchangeUntil(ask.data(), ask.size(), deadline, written);
      } catch (const ConnectionError& e) {
        std::lock_guard<std::mutex> lock(state.mutex);
        state.refreshError = e.what();
        continue;
      }
      if (auto map = parseSlots(state, replies.front(), host)) {
        bool changed = false;
        {
          std::lock_guard<std::mutex> lock(state.mutex);
          changed = !state.map || !sameSlots(*state.map, *map);
          state.map = map;
          state.lastRefresh = Clock::now();
          refreshes_.fetch_add(1, std::memory_order_relaxed);
        }
        if (changed) {
          tellTopology(map->addresses, true);
        }
        return;
      }
    }
  }

  // CLUSTER SLOTS: [[start, end, [host, port, ...], replica...], ...]. An empty host means the
  // node that answered. Null for a reply of another shape or one that assigns no slot.
  std::shared_ptr<SlotMap> parseSlots(State& state, const Reply& reply,
                                      const std::string& askedHost) {
    if (reply.type != Reply::Type::Array || reply.elements.empty()) {
      return nullptr;
    }
    auto map = std::make_shared<SlotMap>();
    map->slot.fill(kNoNode);
    for (const Reply& range : reply.elements) {
      if (range.type != Reply::Type::Array || range.elements.size() < 3 ||
          range.elements[0].type != Reply::Type::Integer ||
          range.elements[1].type != Reply::Type::Integer ||
          range.elements[2].type != Reply::Type::Array || range.elements[2].elements.size() < 2 ||
          range.elements[2].elements[1].type != Reply::Type::Integer) {
        return nullptr;
      }
      const long long first = range.elements[0].integer;
      const long long last = range.elements[1].integer;
      const Reply& master = range.elements[2];
      std::string host = master.elements[0].str;
      if (host.empty() || host == "?") {
        host = askedHost;
      }
      const long long port = master.elements[1].integer;
      if (first < 0 || last >= static_cast<long long>(kSlots) || first > last || port <= 0 ||
          port > 65535) {
        return nullptr;
      }
      const std::string address = host + ":" + std::to_string(port);
      auto at = std::find(map->addresses.begin(), map->addresses.end(), address);
      if (at == map->addresses.end()) {
        map->addresses.push_back(address);
        map->nodes.push_back(clientFor(state, host, static_cast<int>(port)));
        at = map->addresses.end() - 1;
      }
      const auto index = static_cast<std::uint16_t>(at - map->addresses.begin());
      std::fill(map->slot.begin() + first, map->slot.begin() + last + 1, index);
    }
    return map;
  }

  // The whole call: send what is pending, grouped by node; settle replies; redirect, back off and
  // resend the rest until every command has its reply or the deadline passes.
  std::vector<Reply> run(const Command* commands, std::size_t count) {
    State& state = currentState();
    const Clock::time_point deadline = Clock::now() + options_.callTimeout;
    // The common case, without the bookkeeping below: every command on one node, as the map
    // says, and no reply that redirects or refuses.
    if (const auto map = mapOf(state)) {
      HiredisClient* node = nullptr;
      for (std::size_t i = 0; i < count; ++i) {
        const auto route = routeFor(map.get(), commands[i].key);
        if (!route || (node != nullptr && route->node != node)) {
          node = nullptr;
          break;
        }
        node = route->node;
      }
      if (node != nullptr) {
        bool written = false;
        try {
          std::vector<Reply> replies = node->exchangeUntil(commands, count, deadline, written);
          if (std::none_of(replies.begin(), replies.end(), [](const Reply& r) {
                return detail::classifyClusterReply(r) != detail::ClusterReply::Plain;
              })) {
            return replies;
          }
          return runRouted(state, commands, count, deadline, std::move(replies), node);
        } catch (const PoolExhaustedError&) {
          throw;
        } catch (const ConnectionError&) {
          if (written || Clock::now() >= deadline) {
            throw;
          }
        }
      }
    }
    return runRouted(state, commands, count, deadline, {}, nullptr);
  }

  // The general case. `first`, when not empty, holds the replies of a first attempt that sent
  // every command to `firstNode`: its plain replies stand, the rest are redirected or retried.
  std::vector<Reply> runRouted(State& state, const Command* commands, std::size_t count,
                               Clock::time_point deadline, std::vector<Reply> first,
                               HiredisClient* firstNode) {
    std::vector<Reply> replies(count);
    std::vector<Route> routes(count);
    std::vector<bool> routed(count, false);
    std::vector<std::size_t> pending(count);
    for (std::size_t i = 0; i < count; ++i) {
      pending[i] = i;
    }
    std::string lastFailure;
    auto backoff = std::chrono::milliseconds(2);
    // Bounded by the deadline: every pass either settles commands or waits out a backoff.
    while (!pending.empty()) {
      auto map = mapOf(state);
      if (!map) {
        refresh(state, deadline, true);
        map = mapOf(state);
      }
      // Route every pending command; group them by node, in the callers' order within a node.
      std::vector<std::pair<HiredisClient*, std::vector<std::size_t>>> groups;
      std::vector<std::size_t> unroutable;
      const bool replayFirst = !first.empty();
      if (replayFirst) {
        // The first attempt's replies are this pass's: one group, already answered.
        for (std::size_t i = 0; i < count; ++i) {
          routes[i] = Route{firstNode, false, 0};
          routed[i] = true;
        }
      }
      for (std::size_t i : pending) {
        if (!routed[i]) {
          if (auto route = routeFor(map.get(), commands[i].key)) {
            routes[i] = std::move(*route);
            routed[i] = true;
          }
        }
        if (!routed[i]) {
          unroutable.push_back(i);
          continue;
        }
        auto group = std::find_if(groups.begin(), groups.end(),
                                  [&](const auto& g) { return g.first == routes[i].node; });
        if (group == groups.end()) {
          groups.emplace_back(routes[i].node, std::vector<std::size_t>{});
          group = groups.end() - 1;
        }
        group->second.push_back(i);
      }
      std::vector<std::size_t> again = unroutable;
      if (!unroutable.empty()) {
        std::lock_guard<std::mutex> lock(state.mutex);
        lastFailure = state.map ? "no node serves the slot"
                                : "no slot map: " + (state.refreshError.empty()
                                                         ? std::string("no node answered")
                                                         : state.refreshError);
      }
      bool wait = !unroutable.empty();
      bool stale = !unroutable.empty();
      for (auto& [node, indices] : groups) {
        std::vector<Reply> got;
        bool written = false;
        try {
          if (replayFirst) {
            got = std::move(first);
            first.clear();
          } else {
            got = exchange(*node, commands, indices, routes, deadline, written);
          }
        } catch (const PoolExhaustedError&) {
          throw;
        } catch (const ConnectionError& e) {
          if (written || Clock::now() >= deadline) {
            throw;
          }
          // Nothing was sent: the node is down or unreachable. Resend after a refresh.
          lastFailure = e.what();
          for (std::size_t i : indices) {
            routed[i] = false;
            replies[i] = Reply{};
            again.push_back(i);
          }
          wait = true;
          stale = true;
          continue;
        }
        std::size_t at = 0;
        for (std::size_t i : indices) {
          if (routes[i].asking) {
            ++at; // ASKING's +OK
          }
          Reply& reply = got[at++];
          switch (detail::classifyClusterReply(reply)) {
          case detail::ClusterReply::Plain:
            replies[i] = std::move(reply);
            break;
          case detail::ClusterReply::Moved:
          case detail::ClusterReply::Ask: {
            const bool ask = detail::classifyClusterReply(reply) == detail::ClusterReply::Ask;
            const std::string_view target = detail::redirectTarget(reply);
            if (routes[i].redirects >= options_.maxRedirects || target.empty()) {
              replies[i] = std::move(reply);
              break;
            }
            const auto [host, port] = detail::splitAddress(target, "a redirect target");
            HiredisClient* to = clientFor(state, host, port);
            if (!ask) {
              if (const auto masters = patchSlot(state, commands[i].key, std::string(target), to)) {
                tellTopology(*masters, true);
              }
              stale = true;
            } else {
              tellTopology({std::string(target)}, false);
            }
            routes[i] = Route{to, ask, routes[i].redirects + 1};
            lastFailure = reply.str;
            replies[i] = std::move(reply); // what the caller gets if the deadline passes
            again.push_back(i);
            break;
          }
          case detail::ClusterReply::TryAgain:
          case detail::ClusterReply::Down:
            if (detail::classifyClusterReply(reply) == detail::ClusterReply::Down) {
              stale = true;
              routed[i] = false;
            }
            lastFailure = reply.str;
            replies[i] = std::move(reply);
            again.push_back(i);
            wait = true;
            break;
          }
        }
      }
      std::sort(again.begin(), again.end());
      pending = std::move(again);
      if (pending.empty()) {
        break;
      }
      if (stale) {
        refresh(state, deadline, false);
      }
      const auto now = Clock::now();
      if (now >= deadline) {
        return giveUp(replies, pending, lastFailure);
      }
      if (wait) {
        std::this_thread::sleep_for(
            std::min<Clock::duration>(backoff, deadline - now)); // bounded backoff, in budget
        backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
        if (Clock::now() >= deadline) {
          return giveUp(replies, pending, lastFailure);
        }
      }
    }
    return replies;
  }

  // Sends the commands of one node's group, each after ASKING when an ASK sent it there.
  static std::vector<Reply> exchange(HiredisClient& node, const Command* commands,
                                     const std::vector<std::size_t>& indices,
                                     const std::vector<Route>& routes, Clock::time_point deadline,
                                     bool& written) {
    std::vector<Command> batch;
    batch.reserve(indices.size() + 1);
    for (std::size_t i : indices) {
      if (routes[i].asking) {
        batch.push_back(Command{commands[i].key, {"ASKING"}});
      }
      batch.push_back(commands[i]);
    }
    return node.exchangeUntil(batch.data(), batch.size(), deadline, written);
  }

  // At the deadline: error replies (TRYAGAIN, CLUSTERDOWN, a redirect) go back as they are; a
  // command that never got an answer makes the call a TimeoutError.
  std::vector<Reply> giveUp(std::vector<Reply>& replies, const std::vector<std::size_t>& pending,
                            const std::string& lastFailure) const {
    for (std::size_t i : pending) {
      if (!replies[i].isError()) {
        throw TimeoutError("cacheaside: redis cluster: call gave up after " +
                           std::to_string(options_.callTimeout.count()) +
                           " ms: " + (lastFailure.empty() ? "no answer" : lastFailure));
      }
    }
    return std::move(replies);
  }

  HiredisClusterOptions options_;
  std::vector<std::pair<std::string, int>> seeds_;
  std::atomic<State*> state_{nullptr};
  std::atomic<std::uint64_t> refreshes_{0};
  const std::uint64_t generation_ = detail::currentForkGeneration();
  std::mutex topologyMutex_;
  std::vector<ClusterTopologyListener*> topologyListeners_;
};

} // namespace cacheaside
