#pragma once
// A fake Redis for client edge cases a real server cannot be made to show on demand: a reply that
// trickles in one byte at a time, a server that never answers, replies scripted per connection.
// It listens on a free loopback port; every accepted connection runs `handler` on its own thread.
// Handlers pace themselves with FakeServer::Connection::pause(), which returns early (false) once
// the server is stopping, so the destructor never waits for a pacing interval to end.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace testsupport {

class FakeServer {
public:
  // One accepted connection, as its handler sees it.
  class Connection {
  public:
    Connection(int fd, int stopFd, int index) : fd_(fd), stopFd_(stopFd), index_(index) {}

    // 0 for the first connection the server accepted, 1 for the second, ...
    int index() const { return index_; }

    // Waits up to `limit` for bytes from the client and reads what is there; empty when the
    // client closed, the limit passed or the server is stopping.
    std::string receive(std::chrono::milliseconds limit = std::chrono::seconds(20)) {
      if (!waitReadable(limit)) {
        return {};
      }
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    }

    // Sends all of `bytes` in one write; false if the client is gone.
    bool send(std::string_view bytes) {
      while (!bytes.empty()) {
        const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n <= 0) {
          return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
      }
      return true;
    }

    // The slow server's pace: waits `interval` unless the server stops first (then false).
    bool pause(std::chrono::milliseconds interval) {
      pollfd pfd{stopFd_, POLLIN, 0};
      return ::poll(&pfd, 1, static_cast<int>(interval.count())) == 0;
    }

    // Blocks until the server stops or the client closes the connection.
    void holdOpen() {
      while (waitReadable(std::chrono::seconds(60))) {
        char buf[4096];
        if (::recv(fd_, buf, sizeof buf, 0) <= 0) {
          return;
        }
      }
    }

  private:
    bool waitReadable(std::chrono::milliseconds limit) {
      pollfd pfd[2] = {{fd_, POLLIN, 0}, {stopFd_, POLLIN, 0}};
      if (::poll(pfd, 2, static_cast<int>(limit.count())) <= 0) {
        return false;
      }
      return pfd[1].revents == 0;
    }

    int fd_;
    int stopFd_;
    int index_;
  };

  using Handler = std::function<void(Connection&)>;

  explicit FakeServer(Handler handler) : handler_(std::move(handler)) {
    if (::pipe(stopPipe_) != 0) {
      throw std::runtime_error("pipe() failed");
    }
    listenFd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listenFd_ < 0 || ::bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listenFd_, 16) != 0 ||
        ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      closeAll();
      throw std::runtime_error("fake server: cannot listen on loopback");
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { acceptLoop(); });
  }

  ~FakeServer() {
    const char byte = 1;
    (void)!::write(stopPipe_[1], &byte, 1);
    acceptor_.join();
    for (auto& t : handlers_) {
      t.join();
    }
    closeAll();
  }

  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  std::string host() const { return "127.0.0.1"; }
  int port() const { return port_; }
  // Connections accepted so far.
  int accepted() const { return accepted_.load(); }

private:
  void acceptLoop() {
    for (;;) {
      pollfd pfd[2] = {{listenFd_, POLLIN, 0}, {stopPipe_[0], POLLIN, 0}};
      if (::poll(pfd, 2, -1) < 0 || pfd[1].revents != 0) {
        return;
      }
      const int fd = ::accept(listenFd_, nullptr, nullptr);
      if (fd < 0) {
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        connectionFds_.push_back(fd);
      }
      const int index = accepted_++;
      handlers_.emplace_back([this, fd, index] {
        Connection c(fd, stopPipe_[0], index);
        handler_(c);
      });
    }
  }

  void closeAll() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const int fd : connectionFds_) {
      ::close(fd);
    }
    connectionFds_.clear();
    for (int* fd : {&listenFd_, &stopPipe_[0], &stopPipe_[1]}) {
      if (*fd >= 0) {
        ::close(*fd);
        *fd = -1;
      }
    }
  }

  Handler handler_;
  int stopPipe_[2] = {-1, -1};
  int listenFd_ = -1;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::thread acceptor_;
  std::vector<std::thread> handlers_; // touched by the acceptor thread, then by the destructor
  std::mutex mutex_;
  std::vector<int> connectionFds_;
};

// A RESP bulk string reply.
inline std::string bulk(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

} // namespace testsupport
