#include <cacheaside/cacheaside.hpp>
#include <cacheaside/codec/lz4.hpp>
#include <cacheaside/codec/zstd.hpp>
#include <cacheaside/hiredis_client.hpp>

#include <cstdio>
#include <string>

int main() {
  cacheaside::HiredisClient client(cacheaside::HiredisOptions{});
  cacheaside::CacheAside<std::string> cache(client);
  // The compressor targets bring their libraries: these link only if they do.
  const std::string value(4096, 'x');
  std::string lz4, zstd, back1, back2;
  cacheaside::Lz4Compressor().compress(value, lz4);
  cacheaside::ZstdCompressor().compress(value, zstd);
  if (!cacheaside::Lz4Compressor().decompress(lz4, back1, value.size()) ||
      !cacheaside::ZstdCompressor().decompress(zstd, back2, value.size()) || back1 != value ||
      back2 != value) {
    std::printf("compressors did not round-trip\n");
    return 1;
  }
  // run_consumer.cmake checks the hiredis version: the consumer must use the one the suite used.
  std::printf("consumer built against cacheaside %d.%d.%d and hiredis %d.%d.%d, namespace %s\n",
              CACHEASIDE_VERSION_MAJOR, CACHEASIDE_VERSION_MINOR, CACHEASIDE_VERSION_PATCH,
              HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH, cache.options().keyNamespace.c_str());
  return 0;
}
