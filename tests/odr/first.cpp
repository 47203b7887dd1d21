#include "all_headers.hpp"

#include <string>

std::string firstUnit() {
  cacheaside::HiredisOptions options;
  cacheaside::HiredisClient client(options);
  cacheaside::CacheAside<std::string> cache(client);
  return cache.options().keyNamespace + cacheaside::detail::sha1Hex("first");
}
