// Must not compile: CacheAside<T> for a T with no JSON conversion. The test checks that the
// compiler's message says what to add (serializer.hpp's static_assert).
#include <cacheaside/cacheaside.hpp>

#include <string>

struct NoJson {
  int fd = -1;
};

std::string encodeIt(const NoJson& value) {
  std::string out;
  cacheaside::Serializer<NoJson>::encode(value, out);
  return out;
}
