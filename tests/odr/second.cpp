#include "all_headers.hpp"

#include <cstdio>
#include <string>

std::string firstUnit();

int main() {
  cacheaside::HiredisOptions options;
  cacheaside::HiredisClient client(options);
  cacheaside::CacheAside<std::string> cache(client);
  const std::string both = firstUnit() + cache.options().keyNamespace;
  std::puts(both.c_str());
  return both.empty() ? 1 : 0;
}
