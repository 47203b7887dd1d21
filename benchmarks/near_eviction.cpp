// Hit ratios of the near cache's eviction (S3-FIFO, near/store.hpp) against a plain LRU, on the
// same Zipf-distributed traces, with and without one-hit scans mixed in. Single-threaded, one
// shard: this measures the policy, not the locking. Usage: near_eviction [requests]
#include <cacheaside/near/store.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

class Lru {
public:
  explicit Lru(std::size_t capacity) : capacity_(capacity) {}
  bool access(const std::string& key) {
    const auto it = index_.find(key);
    if (it != index_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return true;
    }
    order_.push_front(key);
    index_.emplace(key, order_.begin());
    if (index_.size() > capacity_) {
      index_.erase(order_.back());
      order_.pop_back();
    }
    return false;
  }

private:
  std::size_t capacity_;
  std::list<std::string> order_;
  std::unordered_map<std::string, std::list<std::string>::iterator> index_;
};

std::vector<std::uint32_t> zipfTrace(std::size_t keys, double s, std::size_t n, double scanShare,
                                     std::mt19937_64& rng) {
  std::vector<double> cdf(keys);
  double sum = 0;
  for (std::size_t i = 0; i < keys; ++i) {
    sum += 1.0 / std::pow(static_cast<double>(i + 1), s);
    cdf[i] = sum;
  }
  std::uniform_real_distribution<double> u(0.0, sum);
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::vector<std::uint32_t> trace;
  trace.reserve(n);
  std::uint32_t scanKey = static_cast<std::uint32_t>(keys); // keys never seen again
  while (trace.size() < n) {
    if (scanShare > 0 && coin(rng) < scanShare / 100.0) {
      for (int i = 0; i < 100 && trace.size() < n; ++i) {
        trace.push_back(scanKey++);
      }
      continue;
    }
    const auto at = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
    trace.push_back(static_cast<std::uint32_t>(at));
  }
  return trace;
}

double lruRatio(const std::vector<std::uint32_t>& trace, std::size_t capacity) {
  Lru lru(capacity);
  std::size_t hits = 0;
  for (const auto k : trace) {
    hits += lru.access(std::to_string(k)) ? 1 : 0;
  }
  return 100.0 * static_cast<double>(hits) / static_cast<double>(trace.size());
}

double s3fifoRatio(const std::vector<std::uint32_t>& trace, std::size_t capacity) {
  cacheaside::near::NearStoreOptions o;
  o.maxEntries = capacity;
  o.maxBytes = std::size_t{1} << 40;
  o.shards = 1;
  cacheaside::near::NearStore<int> store(o);
  const auto now = cacheaside::near::NearStore<int>::Clock::now();
  const auto forever = now + std::chrono::hours(1);
  const auto value = std::make_shared<const int>(1);
  std::size_t hits = 0;
  for (const auto k : trace) {
    const std::string key = std::to_string(k);
    if (store.find(key, now)) {
      ++hits;
    } else {
      store.install(key, store.ticket(key), value, 0, forever);
    }
  }
  return 100.0 * static_cast<double>(hits) / static_cast<double>(trace.size());
}

} // namespace

int main(int argc, char** argv) {
  const std::size_t n = argc > 1 ? static_cast<std::size_t>(std::atol(argv[1])) : 2000000;
  const std::size_t keys = 100000;
  std::mt19937_64 rng(42);
  std::printf("%zu requests over %zu keys; hit ratio %% (S3-FIFO = near/store.hpp, 1 shard)\n\n", n,
              keys);
  std::printf("| trace | capacity | LRU | S3-FIFO | S3-FIFO − LRU |\n|---|---|---|---|---|\n");
  for (const double s : {0.8, 0.99, 1.2}) {
    for (const double scans : {0.0, 1.0}) {
      const auto trace = zipfTrace(keys, s, n, scans, rng);
      for (const std::size_t pct : {1, 5, 10}) {
        const std::size_t capacity = keys * pct / 100;
        const double lru = lruRatio(trace, capacity);
        const double fifo = s3fifoRatio(trace, capacity);
        std::printf("| Zipf s=%.2f%s | %zu (%zu %%) | %.2f | %.2f | %+.2f |\n", s,
                    scans > 0 ? " + scans (1 % of draws start a 100-key one)" : "", capacity, pct,
                    lru, fifo, fifo - lru);
      }
    }
  }
  return 0;
}
