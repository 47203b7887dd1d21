#pragma once
// Shared pieces of the benchmark program: the payload type, a hand-written hiredis connection,
// a round-trip counting client, a timed multi-threaded runner, statistics and the table.

#include <cacheaside/client.hpp>
#include <cacheaside/codec/msgpack.hpp>

#include <hiredis/hiredis.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <initializer_list>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/time.h>
#include <thread>
#include <utility>
#include <vector>

namespace bench {

/// One plain command, routed by its first argument after the name (GET k, SET k v, DEL k).
inline cacheaside::Reply cmd(cacheaside::RedisClient& client, const cacheaside::Argv& argv) {
  const std::string_view key = argv.size() > 1 ? argv[1] : std::string_view();
  return client.command(cacheaside::Command{key, argv});
}

/// One row of benchmarks/data/products-20.json.
struct Product {
  int id = 0;
  std::string name;
  std::string category;
  double price = 0;
  NLOHMANN_DEFINE_TYPE_INTRUSIVE(Product, id, name, category, price)
  MSGPACK_DEFINE(id, name, category, price)
  /// cereal's member function (any archive; cereal itself is included only by the codec section).
  template <typename Archive> void serialize(Archive& archive) {
    archive(id, name, category, price);
  }
};
using Products = std::vector<Product>;

using Clock = std::chrono::steady_clock;

/// Nanoseconds on the monotonic clock, comparable between processes of one machine.
inline std::int64_t monoNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct ReplyFree {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyFree>;

/// One blocking TCP hiredis connection to 127.0.0.1, held the way a hand-written program holds
/// it: no pool, no wrapper, the same connect and command timeouts as the pooled client.
class RawConn {
public:
  RawConn(int port, std::chrono::milliseconds timeout) {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(timeout.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((timeout.count() % 1000) * 1000);
    ctx_.reset(redisConnectWithTimeout("127.0.0.1", port, tv));
    if (!ctx_ || ctx_->err != 0) {
      throw std::runtime_error(std::string("bench: cannot connect to redis: ") +
                               (ctx_ ? ctx_->errstr : "out of memory"));
    }
    if (redisSetTimeout(ctx_.get(), tv) != REDIS_OK) {
      throw std::runtime_error("bench: cannot set the redis timeout");
    }
  }

  redisContext* get() const noexcept { return ctx_.get(); }

  /// Sends one binary-safe argv command (at most 8 arguments); throws on a transport failure.
  ReplyPtr command(std::initializer_list<std::string_view> args) {
    std::array<const char*, 8> argv{};
    std::array<std::size_t, 8> lens{};
    if (args.size() > argv.size()) {
      throw std::logic_error("bench: too many arguments");
    }
    std::size_t n = 0;
    for (std::string_view a : args) {
      argv[n] = a.data();
      lens[n] = a.size();
      ++n;
    }
    ReplyPtr reply(static_cast<redisReply*>(
        redisCommandArgv(ctx_.get(), static_cast<int>(n), argv.data(), lens.data())));
    if (!reply) {
      throw std::runtime_error(std::string("bench: redis command failed: ") + ctx_->errstr);
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      throw std::runtime_error(std::string("bench: redis error: ") +
                               std::string(reply->str, reply->len));
    }
    return reply;
  }

private:
  struct CtxFree {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
  };
  std::unique_ptr<redisContext, CtxFree> ctx_;
};

/// A RedisClient that forwards to another and counts round trips (a pipeline is one).
class CountingClient final : public cacheaside::RedisClient {
public:
  explicit CountingClient(cacheaside::RedisClient& inner) : inner_(inner) {}

  cacheaside::Reply command(const cacheaside::Command& command) override {
    roundTrips_.fetch_add(1, std::memory_order_relaxed);
    return inner_.command(command);
  }

  std::vector<cacheaside::Reply>
  pipeline(const std::vector<cacheaside::Command>& commands) override {
    roundTrips_.fetch_add(1, std::memory_order_relaxed);
    return inner_.pipeline(commands);
  }

  std::uint64_t roundTrips() const noexcept { return roundTrips_.load(); }

private:
  cacheaside::RedisClient& inner_;
  std::atomic<std::uint64_t> roundTrips_{0};
};

/// The server's counters: total_commands_processed and the calls of each command.
struct ServerCounters {
  long long total = 0;
  std::map<std::string, long long> calls; // "set" -> calls

  long long of(const std::string& cmd) const {
    const auto it = calls.find(cmd);
    return it == calls.end() ? 0 : it->second;
  }
};

/// One INFO call (sections stats and commandstats).
inline ServerCounters readServerCounters(RawConn& conn) {
  const ReplyPtr reply = conn.command({"INFO", "all"});
  if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS) {
    throw std::runtime_error("bench: unexpected INFO reply");
  }
  const std::string text(reply->str, reply->len);
  ServerCounters out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) {
      end = text.size();
    }
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    constexpr std::string_view kTotal = "total_commands_processed:";
    constexpr std::string_view kCmd = "cmdstat_";
    if (line.compare(0, kTotal.size(), kTotal) == 0) {
      out.total = std::stoll(line.substr(kTotal.size()));
    } else if (line.compare(0, kCmd.size(), kCmd) == 0) {
      const std::size_t colon = line.find(':');
      const std::size_t calls = line.find("calls=", colon);
      if (colon != std::string::npos && calls != std::string::npos) {
        out.calls[line.substr(kCmd.size(), colon - kCmd.size())] =
            std::stoll(line.substr(calls + 6));
      }
    }
  }
  return out;
}

/// The median of values (the mean of the two middle ones for an even count); 0 when empty.
inline double median(std::vector<double> values) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

/// The q-quantile (nearest rank) of nanosecond samples, in microseconds; reorders samples.
inline double quantileMicros(std::vector<std::int64_t>& samples, double q) {
  if (samples.empty()) {
    return 0;
  }
  const auto rank = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1) + 0.5);
  std::nth_element(samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(rank),
                   samples.end());
  return static_cast<double>(samples[rank]) / 1000.0;
}

/// What one timed run measured: raw samples until finish() turns them into figures. Runs of one
/// case can be merged (add) before finish().
struct TimedResult {
  std::uint64_t ops = 0;
  double seconds = 0;
  std::vector<std::int64_t> samples; // nanoseconds per call, when latencies were recorded
  double opsPerSec = 0;
  double p50us = 0;
  double p99us = 0;

  void add(TimedResult&& other) {
    ops += other.ops;
    seconds += other.seconds;
    samples.insert(samples.end(), other.samples.begin(), other.samples.end());
  }

  void finish() {
    opsPerSec = seconds > 0 ? static_cast<double>(ops) / seconds : 0;
    p50us = quantileMicros(samples, 0.50);
    p99us = quantileMicros(samples, 0.99);
    samples.clear();
    samples.shrink_to_fit();
  }
};

/// Runs `threads` threads for `duration`. Each thread calls makeOp(index) to build its operation
/// (and its connection) before the start, warms up, waits for the common start, then calls the
/// operation until told to stop. Returns the calls, the wall time and, when latencies is set,
/// the time of every call of every thread (not finished: see TimedResult::finish).
template <typename MakeOp>
TimedResult timedRun(int threads, std::chrono::milliseconds duration, bool latencies,
                     MakeOp&& makeOp) {
  constexpr int kWarmup = 100;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> stop{false};
  const auto n = static_cast<std::size_t>(threads);
  std::vector<std::vector<std::int64_t>> samples(n);
  std::vector<std::uint64_t> ops(n, 0);
  std::vector<Clock::time_point> ends(n);
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> workers;
  workers.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    workers.emplace_back([&, i] {
      try {
        auto op = makeOp(static_cast<int>(i));
        for (int w = 0; w < kWarmup; ++w) {
          op();
        }
        if (latencies) {
          samples[i].reserve(std::size_t{1} << 16);
        }
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
          std::this_thread::yield();
        }
        std::uint64_t done = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          if (latencies) {
            const auto t0 = Clock::now();
            op();
            samples[i].push_back(
                std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
          } else {
            op();
          }
          ++done;
        }
        ends[i] = Clock::now();
        ops[i] = done;
      } catch (...) {
        errors[i] = std::current_exception();
        ends[i] = Clock::now();
        ready.fetch_add(1);
      }
    });
  }
  while (ready.load() < threads) { // every thread counts itself, even when it fails
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  const auto start = Clock::now();
  go.store(true, std::memory_order_release);
  std::this_thread::sleep_for(duration);
  stop.store(true);
  for (auto& w : workers) {
    w.join();
  }
  for (const auto& e : errors) {
    if (e) {
      std::rethrow_exception(e);
    }
  }
  TimedResult result;
  const auto end = *std::max_element(ends.begin(), ends.end());
  result.seconds = std::chrono::duration<double>(end - start).count();
  for (std::size_t i = 0; i < n; ++i) {
    result.ops += ops[i];
    result.samples.insert(result.samples.end(), samples[i].begin(), samples[i].end());
  }
  return result;
}

/// printf into a std::string.
template <typename... Args> std::string format(const char* fmt, Args... args) {
  std::array<char, 256> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), fmt, args...);
  return std::string(buf.data(), static_cast<std::size_t>(std::max(n, 0)) < buf.size()
                                     ? static_cast<std::size_t>(std::max(n, 0))
                                     : buf.size() - 1);
}

/// 23456.7 -> "23.5k".
inline std::string opsText(double opsPerSec) {
  return opsPerSec >= 1000 ? format("%.1fk", opsPerSec / 1000) : format("%.0f", opsPerSec);
}

/// A markdown table, printed with aligned columns (widths counted in UTF-8 code points).
class Table {
public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}

  void add(std::vector<std::string> row) {
    row.resize(rows_.front().size());
    rows_.push_back(std::move(row));
  }

  void print(std::FILE* out) const {
    std::vector<std::size_t> width(rows_.front().size(), 3);
    for (const auto& row : rows_) {
      for (std::size_t c = 0; c < row.size(); ++c) {
        width[c] = std::max(width[c], columns(row[c]));
      }
    }
    const auto line = [&](const std::vector<std::string>& row) {
      std::string text = "|";
      for (std::size_t c = 0; c < row.size(); ++c) {
        text += " " + row[c] + std::string(width[c] - columns(row[c]), ' ') + " |";
      }
      std::fprintf(out, "%s\n", text.c_str());
    };
    line(rows_.front());
    std::string rule = "|";
    for (std::size_t w : width) {
      rule += std::string(w + 2, '-') + "|";
    }
    std::fprintf(out, "%s\n", rule.c_str());
    for (std::size_t r = 1; r < rows_.size(); ++r) {
      line(rows_[r]);
    }
  }

private:
  static std::size_t columns(const std::string& s) {
    std::size_t n = 0;
    for (unsigned char c : s) {
      n += (c & 0xC0) != 0x80 ? 1 : 0;
    }
    return n;
  }

  std::vector<std::vector<std::string>> rows_;
};

} // namespace bench
