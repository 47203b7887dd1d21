#pragma once
// A private redis-server child on a free loopback port, without persistence: started, SIGKILLed
// and restarted on the same port, always by its PID. Every wait has a deadline.

#include <hiredis/hiredis.h>

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace chaos {

struct ContextFree {
  void operator()(redisContext* c) const noexcept { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextFree>;
struct ReplyFree {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

inline timeval toTimeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
  return tv;
}

/// A blocking connection to 127.0.0.1:port with the given connect and command timeout, or null.
inline Context connectTo(int port, std::chrono::milliseconds timeout) {
  Context c(redisConnectWithTimeout("127.0.0.1", port, toTimeval(timeout)));
  if (!c || c->err != 0 || redisSetTimeout(c.get(), toTimeval(timeout)) != REDIS_OK) {
    return nullptr;
  }
  return c;
}

/// One binary-safe argv command; null on a transport failure.
inline ReplyPtr command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return ReplyPtr(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data())));
}

inline int freeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    throw std::runtime_error("socket() failed");
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

class RedisProcess {
public:
  explicit RedisProcess(std::vector<std::string> extraArgs) : extraArgs_(std::move(extraArgs)) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = freeLoopbackPort();
      if (start()) {
        return;
      }
    }
    throw std::runtime_error("could not start redis-server (is it installed?)");
  }
  ~RedisProcess() { signalAndReap(SIGTERM); }
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }

  void kill() { signalAndReap(SIGKILL); }

  /// Starts again on the same port; the old socket may linger a moment, so retry briefly.
  void restart() {
    signalAndReap(SIGKILL);
    for (int attempt = 0; attempt < 50; ++attempt) {
      if (start()) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("could not restart redis-server on port " + std::to_string(port_));
  }

private:
  bool start() {
    std::vector<std::string> args{
        "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",  "--save", "",
        "--appendonly", "no",     "--daemonize",         "no",     "--loglevel", "warning"};
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
      ::prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive the run, even when it is killed
      const int devnull = ::open("/dev/null", O_WRONLY);
      if (devnull >= 0) {
        ::dup2(devnull, STDOUT_FILENO);
        ::dup2(devnull, STDERR_FILENO);
      }
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      if (const Context c = connectTo(port_, std::chrono::milliseconds(200))) {
        if (command(c.get(), {"PING"})) {
          return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    signalAndReap(SIGKILL);
    return false;
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

} // namespace chaos
