// Quick start: cache a slow lookup in Redis, then invalidate it after a write.
//   quickstart [host] [port]      (default 127.0.0.1 6379)
#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

struct Product {
  int id = 0;
  std::string name;
  double price = 0;
  NLOHMANN_DEFINE_TYPE_INTRUSIVE(Product, id, name, price)
};

// Stands for a slow database query.
std::vector<Product> queryProducts(const std::string& category) {
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  return {{1, category + " kettle", 24.5}, {2, category + " toaster", 39.0}};
}

int main(int argc, char** argv) {
  cacheaside::HiredisOptions redis;
  redis.host = argc > 1 ? argv[1] : "127.0.0.1";
  redis.port = argc > 2 ? std::atoi(argv[2]) : 6379;
  cacheaside::HiredisClient client(redis);

  cacheaside::CacheOptions options;
  options.keyNamespace = "quickstart";
  options.ttl = std::chrono::minutes(10);
  cacheaside::CacheAside<std::vector<Product>> products(client, options);

  const auto timed = [&](const char* label) {
    const auto start = std::chrono::steady_clock::now();
    const auto list =
        products.getOrLoad("products:kitchen", [] { return queryProducts("kitchen"); });
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    std::printf("%-28s %zu products in %8.2f ms\n", label, list.size(), us / 1000.0);
  };

  products.invalidate("products:kitchen"); // start cold, whatever an earlier run left
  timed("cold (loads from the db):");
  timed("warm (served by Redis):");
  // After a write commits, invalidate the keys it changed; the next read loads again.
  products.invalidate("products:kitchen");
  timed("after invalidate:");

  const cacheaside::Stats s = products.stats();
  std::printf("hits %llu, misses %llu, loads %llu, redis errors %llu\n",
              static_cast<unsigned long long>(s.hits), static_cast<unsigned long long>(s.misses),
              static_cast<unsigned long long>(s.loads),
              static_cast<unsigned long long>(s.redisErrors));
  return s.redisErrors == 0 ? 0 : 1;
}
