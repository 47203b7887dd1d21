// Must not compile: MsgpackSerializer for a type with no msgpack-cxx adaptor inside a vector.
// The test checks that the compiler's message says what to add (codec/msgpack.hpp's
// static_assert), instead of an error deep inside msgpack-cxx.
#include <cacheaside/codec/msgpack.hpp>

#include <string>
#include <vector>

struct NoAdaptor {
  int fd = -1;
};

std::string encodeIt(const std::vector<NoAdaptor>& value) {
  std::string out;
  cacheaside::MsgpackSerializer<std::vector<NoAdaptor>>::encode(value, out);
  return out;
}
