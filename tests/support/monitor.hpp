#pragma once
// Counts the commands clients send to a redis-server, as the server saw them (MONITOR), to pin
// round trips. Commands that scripts run inside the server show as "[N lua]" and are not
// round trips.

#include <hiredis/hiredis.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace testsupport {

class CommandMonitor {
public:
  CommandMonitor(const std::string& host, int port) : host_(host), port_(port) {
    timeval tv{5, 0};
    ctx_ = redisConnectWithTimeout(host.c_str(), port, tv);
    if (ctx_ == nullptr || ctx_->err != 0) {
      throw std::runtime_error("monitor: cannot connect");
    }
    redisSetTimeout(ctx_, tv);
    auto* r = static_cast<redisReply*>(redisCommand(ctx_, "MONITOR"));
    if (r == nullptr) {
      throw std::runtime_error("monitor: MONITOR failed");
    }
    freeReplyObject(r);
  }

  ~CommandMonitor() { redisFree(ctx_); }
  CommandMonitor(const CommandMonitor&) = delete;
  CommandMonitor& operator=(const CommandMonitor&) = delete;

  // Every command clients sent since the last call, in order, as MONITOR prints them,
  // without the ones scripts ran and without this call's own marker.
  std::vector<std::string> clientCommands() {
    const std::string marker = "monitor-marker-" + std::to_string(++markers_);
    timeval tv{5, 0};
    redisContext* side = redisConnectWithTimeout(host_.c_str(), port_, tv);
    if (side == nullptr || side->err != 0) {
      throw std::runtime_error("monitor: cannot connect the marker client");
    }
    const char* argv[] = {"ECHO", marker.c_str()};
    auto* echo = static_cast<redisReply*>(redisCommandArgv(side, 2, argv, nullptr));
    if (echo != nullptr) {
      freeReplyObject(echo);
    }
    redisFree(side);
    std::vector<std::string> lines;
    for (;;) {
      void* raw = nullptr;
      if (redisGetReply(ctx_, &raw) != REDIS_OK || raw == nullptr) {
        throw std::runtime_error("monitor: stream broke");
      }
      const auto* r = static_cast<redisReply*>(raw);
      std::string line(r->str, r->len);
      freeReplyObject(raw);
      if (line.find(marker) != std::string::npos) {
        return lines;
      }
      if (line.find(" lua] ") == std::string::npos) {
        lines.push_back(line);
      }
    }
  }

private:
  std::string host_;
  int port_;
  redisContext* ctx_ = nullptr;
  int markers_ = 0;
};

} // namespace testsupport
