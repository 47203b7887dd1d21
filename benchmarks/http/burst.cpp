// burst: N clients that each open a new connection and send the same GET at the same moment.
//
//   burst PORT PATH [CLIENTS]
//
// Every client is a thread that waits at a barrier; once all are waiting they are released
// together, and each connects to 127.0.0.1:PORT, sends `GET PATH` with Connection: close and
// reads the response to the end. Prints one line:
//   clients=100 ok=100 same_body=yes first_ms=201.3 p50_ms=203.0 max_ms=212.9
// times counted from the release. Exits 1 when a client fails, gets a status other than 200,
// or a body that differs from the others.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
  bool ok = false;
  std::string error;
  std::string body;
  Clock::time_point done;
};

// Releases every waiting thread at once, when the last one has arrived.
class Barrier {
public:
  explicit Barrier(std::size_t count) : remaining_(count) {}
  void arriveAndWait() {
    std::unique_lock<std::mutex> lock(mutex_);
    if (--remaining_ == 0) {
      released_ = Clock::now();
      open_.notify_all();
      return;
    }
    open_.wait(lock, [this] { return remaining_ == 0; });
  }
  Clock::time_point released() {
    std::lock_guard<std::mutex> lock(mutex_);
    return released_;
  }

private:
  std::mutex mutex_;
  std::condition_variable open_;
  std::size_t remaining_;
  Clock::time_point released_;
};

Result fetch(int port, const std::string& path) {
  Result r;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    r.error = "socket failed";
    return r;
  }
  timeval timeout{10, 0}; // every read and write gives up after 10 s
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<unsigned short>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    r.error = "connect failed";
    ::close(fd);
    return r;
  }
  const std::string request =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    r.error = "send failed";
    ::close(fd);
    return r;
  }
  std::string response;
  char buffer[16384];
  for (;;) { // bounded by the peer closing, or by the 10 s receive timeout
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      if (n < 0) {
        r.error = "recv failed";
      }
      break;
    }
    response.append(buffer, static_cast<std::size_t>(n));
  }
  r.done = Clock::now();
  ::close(fd);
  const auto headEnd = response.find("\r\n\r\n");
  if (r.error.empty() &&
      (response.rfind("HTTP/1.1 200 ", 0) != 0 || headEnd == std::string::npos)) {
    r.error = "status line: " + response.substr(0, response.find("\r\n"));
  }
  if (r.error.empty()) {
    r.ok = true;
    r.body = response.substr(headEnd + 4);
  }
  return r;
}

double millis(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: burst PORT PATH [CLIENTS]\n");
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const std::string path = argv[2];
  const int clients = argc > 3 ? std::atoi(argv[3]) : 100;
  if (port <= 0 || port > 65535 || clients <= 0 || clients > 10000) {
    std::fprintf(stderr, "burst: bad port or client count\n");
    return 2;
  }
  Barrier barrier(static_cast<std::size_t>(clients));
  std::vector<Result> results(static_cast<std::size_t>(clients));
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      barrier.arriveAndWait();
      results[static_cast<std::size_t>(i)] = fetch(port, path);
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  const Clock::time_point start = barrier.released();
  std::vector<double> times;
  int ok = 0;
  bool same = true;
  for (const Result& r : results) {
    if (!r.ok) {
      std::fprintf(stderr, "burst: %s\n", r.error.c_str());
      continue;
    }
    ++ok;
    same = same && r.body == results.front().body;
    times.push_back(millis(r.done - start));
  }
  std::sort(times.begin(), times.end());
  const auto at = [&](double q) {
    return times.empty() ? 0.0 : times[static_cast<std::size_t>(q * (times.size() - 1))];
  };
  std::printf("clients=%d ok=%d same_body=%s first_ms=%.1f p50_ms=%.1f max_ms=%.1f\n", clients, ok,
              same ? "yes" : "no", at(0), at(0.5), at(1));
  return ok == clients && same ? 0 : 1;
}
