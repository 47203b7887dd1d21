#include <cacheaside/cacheaside.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <cstdio>
#include <string>

int main() {
  cacheaside::HiredisClient client(cacheaside::HiredisOptions{});
  cacheaside::CacheAside<std::string> cache(client);
  // run_consumer.cmake checks the hiredis version: the consumer must use the one the suite used.
  std::printf("consumer built against cacheaside %d.%d.%d and hiredis %d.%d.%d, namespace %s\n",
              CACHEASIDE_VERSION_MAJOR, CACHEASIDE_VERSION_MINOR, CACHEASIDE_VERSION_PATCH,
              HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, cache.options().keyNamespace.c_str());
  return 0;
}
