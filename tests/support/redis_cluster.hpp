#pragma once
// A private Redis Cluster for tests that kill, restart or reshard nodes: 3 masters and 3
// replicas on free loopback ports, no persistence, cluster-node-timeout 2000, created with
// redis-cli --cluster create, stopped by PID. The binary is the one RedisServer starts.

#include "redis_server.hpp"

#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

namespace testsupport {

// One reply of a short-lived admin connection, as text (status, string or integer), after AUTH
// when a password is given; throws when the node cannot be reached within 1 s.
inline std::string adminCommand(int port, const std::vector<std::string>& args,
                                const std::string& password = {}) {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (c == nullptr || c->err != 0) {
    if (c != nullptr) {
      redisFree(c);
    }
    throw std::runtime_error("admin: cannot connect to port " + std::to_string(port));
  }
  redisSetTimeout(c, tv);
  if (!password.empty()) {
    const char* auth[] = {"AUTH", password.c_str()};
    if (auto* a = static_cast<redisReply*>(redisCommandArgv(c, 2, auth, nullptr))) {
      freeReplyObject(a);
    }
  }
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
  std::string out;
  if (r == nullptr) {
    redisFree(c);
    throw std::runtime_error("admin: no reply from port " + std::to_string(port));
  }
  if (r->type == REDIS_REPLY_INTEGER) {
    out = std::to_string(r->integer);
  } else if (r->str != nullptr) {
    out.assign(r->str, r->len);
  }
  freeReplyObject(r);
  redisFree(c);
  return out;
}

// Whether `port` answers and reports cluster_state:ok.
inline bool clusterOk(int port, const std::string& password = {}) {
  try {
    return adminCommand(port, {"CLUSTER", "INFO"}, password).find("cluster_state:ok") !=
           std::string::npos;
  } catch (const std::exception&) {
    return false;
  }
}

class RedisCluster {
public:
  static constexpr int kNodes = 6;

  // password: every node requires it (requirepass, and masterauth for its replica links).
  explicit RedisCluster(std::string password = {}) : password_(std::move(password)) {
    char pattern[] = "/tmp/cacheaside-cluster-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    dir_ = pattern;
    for (int i = 0; i < kNodes; ++i) {
      std::vector<std::string> auth;
      if (!password_.empty()) {
        auth = {"--requirepass", password_, "--masterauth", password_};
      }
      std::vector<std::string> args{"--repl-diskless-sync-delay",
                                    "0",
                                    "--cluster-enabled",
                                    "yes",
                                    "--cluster-config-file",
                                    dir_ + "/nodes-" + std::to_string(i) + ".conf",
                                    "--cluster-node-timeout",
                                    "2000",
                                    "--dir",
                                    dir_};
      args.insert(args.end(), auth.begin(), auth.end());
      nodes_.push_back(std::make_unique<RedisServer>(std::move(args)));
    }
    std::string command = "redis-cli --cluster create";
    for (const auto& n : nodes_) {
      command += " 127.0.0.1:" + std::to_string(n->port());
    }
    if (!password_.empty()) {
      command += " -a '" + password_ + "' --no-auth-warning";
    }
    command += " --cluster-replicas 1 --cluster-yes >/dev/null 2>&1";
    if (std::system(command.c_str()) != 0) {
      throw std::runtime_error("redis-cli --cluster create failed");
    }
    if (!waitOk(std::chrono::seconds(30))) {
      throw std::runtime_error("the test cluster did not reach cluster_state:ok in 30 s");
    }
    // A replica that never synced cannot take over: failover tests need all three in sync.
    if (!waitReplicasInSync(std::chrono::seconds(30))) {
      throw std::runtime_error("the test cluster's replicas did not sync in 30 s");
    }
  }

  ~RedisCluster() {
    nodes_.clear(); // stops every node by PID
    const std::string rm = "rm -rf '" + dir_ + "'";
    (void)std::system(rm.c_str());
  }

  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  RedisServer& node(int i) { return *nodes_.at(static_cast<std::size_t>(i)); }
  int port(int i) const { return nodes_.at(static_cast<std::size_t>(i))->port(); }
  std::string seed() const { return "127.0.0.1:" + std::to_string(port(0)); }

  // Until every running node reports cluster_state:ok and agrees on one master per slot range
  // (CLUSTER SLOTS equal on all), or the limit passes.
  bool waitOk(std::chrono::milliseconds limit) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      bool ok = true;
      for (const auto& n : nodes_) {
        if (n->running() && !clusterOk(n->port(), password_)) {
          ok = false;
          break;
        }
      }
      if (ok) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // Until three running nodes are replicas whose link to their master is up, or the limit passes.
  bool waitReplicasInSync(std::chrono::milliseconds limit) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      int inSync = 0;
      for (const auto& n : nodes_) {
        try {
          if (n->running() && adminCommand(n->port(), {"INFO", "replication"}, password_)
                                      .find("master_link_status:up") != std::string::npos) {
            ++inSync;
          }
        } catch (const std::exception&) {
        }
      }
      if (inSync >= kNodes / 2) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // The index of the node that is master of `slot` as node `askIndex` sees it, or -1.
  int masterOf(int slot, int askIndex) const {
    timeval tv{1, 0};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port(askIndex), tv);
    int found = -1;
    if (c != nullptr && c->err == 0) {
      redisSetTimeout(c, tv);
      if (!password_.empty()) {
        if (auto* a = static_cast<redisReply*>(redisCommand(c, "AUTH %s", password_.c_str()))) {
          freeReplyObject(a);
        }
      }
      auto* r = static_cast<redisReply*>(redisCommand(c, "CLUSTER SLOTS"));
      if (r != nullptr && r->type == REDIS_REPLY_ARRAY) {
        for (std::size_t i = 0; i < r->elements; ++i) {
          const redisReply* range = r->element[i];
          if (range->elements >= 3 && range->element[0]->integer <= slot &&
              slot <= range->element[1]->integer) {
            const int masterPort = static_cast<int>(range->element[2]->element[1]->integer);
            for (int n = 0; n < kNodes; ++n) {
              if (port(n) == masterPort) {
                found = n;
              }
            }
          }
        }
      }
      if (r != nullptr) {
        freeReplyObject(r);
      }
    }
    if (c != nullptr) {
      redisFree(c);
    }
    return found;
  }

  // The node's cluster node id.
  std::string nodeId(int i) const { return adminCommand(port(i), {"CLUSTER", "MYID"}, password_); }

private:
  std::string password_;
  std::string dir_;
  std::vector<std::unique_ptr<RedisServer>> nodes_;
};

} // namespace testsupport
