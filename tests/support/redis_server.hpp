#pragma once
// A private redis-server for one test: started on a free loopback port, without persistence,
// stopped by PID. Tests that stop, kill or restart Redis use their own instance. The binary is
// $CACHEASIDE_REDIS_SERVER when set (scripts/test.sh points it at the server under test, e.g. a
// valkey-server), else redis-server from PATH.

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace testsupport {

// A port that was free a moment ago (the kernel picks it; the server may still lose a race).
inline int freeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    throw std::runtime_error("socket() failed");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The redis-server (or compatible) binary the tests start.
inline std::string redisServerBinary() {
  const char* configured = std::getenv("CACHEASIDE_REDIS_SERVER");
  return configured != nullptr && *configured != '\0' ? configured : "redis-server";
}

// Arguments that allow DEBUG: Redis 7 made it opt-in with --enable-debug-command, which Redis 6
// rejects (it allows DEBUG anyway). Valkey, forked from Redis 7.2, takes the option.
inline std::vector<std::string> enableDebugCommandArgs() {
  const std::string command = "'" + redisServerBinary() + "' --version";
  std::string version;
  if (FILE* out = ::popen(command.c_str(), "r")) {
    char buffer[256];
    while (std::fgets(buffer, sizeof buffer, out) != nullptr) {
      version += buffer;
    }
    ::pclose(out);
  }
  const auto at = version.find(" v=");
  const bool redis6OrOlder = version.rfind("Redis ", 0) == 0 && at != std::string::npos &&
                             std::atoi(version.c_str() + at + 3) < 7;
  if (redis6OrOlder) {
    return {};
  }
  return {"--enable-debug-command", "yes"};
}

class RedisServer {
public:
  // extraArgs go to redis-server after the defaults, e.g. {"--requirepass", "secret"}.
  explicit RedisServer(std::vector<std::string> extraArgs = {}) : extraArgs_(std::move(extraArgs)) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = freeLoopbackPort();
      if (tryStart()) {
        return;
      }
    }
    throw std::runtime_error("could not start redis-server (is it installed?)");
  }

  ~RedisServer() { stop(); }

  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  bool running() const { return pid_ > 0; }

  // SIGTERM and reap.
  void stop() { signalAndReap(SIGTERM); }

  // SIGKILL and reap: the server vanishes without closing anything gracefully.
  void kill() { signalAndReap(SIGKILL); }

  // Starts again on the same port.
  void restart() {
    stop();
    if (!tryStart()) {
      throw std::runtime_error("could not restart redis-server on port " + std::to_string(port_));
    }
  }

private:
  bool tryStart() {
    // Everything the child needs is built before fork(): only exec-safe calls after it.
    std::vector<std::string> args{
        redisServerBinary(), "--port", std::to_string(port_), "--bind", "127.0.0.1",  "--save", "",
        "--appendonly",      "no",     "--daemonize",         "no",     "--loglevel", "warning"};
    args.insert(args.end(), extraArgs_.begin(), extraArgs_.end());
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      throw std::runtime_error("fork() failed");
    }
    if (pid == 0) {
      const int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) {
        ::dup2(devnull, STDOUT_FILENO);
        ::dup2(devnull, STDERR_FILENO);
      }
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1; // exited: most likely the port was taken
        return false;
      }
      if (ping()) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    signalAndReap(SIGKILL);
    return false;
  }

  bool ping() const {
    timeval tv{0, 200000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    bool ok = false;
    if (c != nullptr && c->err == 0) {
      const char* argv[] = {"PING"};
      auto* r = static_cast<redisReply*>(redisCommandArgv(c, 1, argv, nullptr));
      ok = r != nullptr; // PONG, or NOAUTH from a server that wants a password: up either way
      if (r != nullptr) {
        freeReplyObject(r);
      }
    }
    if (c != nullptr) {
      redisFree(c);
    }
    return ok;
  }

  void signalAndReap(int sig) {
    if (pid_ > 0) {
      ::kill(pid_, sig);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

  std::vector<std::string> extraArgs_;
  int port_ = 0;
  pid_t pid_ = -1;
};

} // namespace testsupport
