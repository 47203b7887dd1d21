#include "support/catch.hpp"

#include <cacheaside/serializer.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

struct Product {
  int id = 0;
  std::string name;
  double price = 0;
  std::vector<std::string> tags;
  NLOHMANN_DEFINE_TYPE_INTRUSIVE(Product, id, name, price, tags)
  bool operator==(const Product& o) const {
    return id == o.id && name == o.name && price == o.price && tags == o.tags;
  }
};

struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point& o) const { return x == o.x && y == o.y; }
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Point, x, y)

struct NotSerializable {
  int fd = -1;
};

// A type the user does not own, with a Serializer specialization of their own.
struct ThirdPartyColor {
  unsigned char r, g, b;
};

} // namespace

template <> struct cacheaside::Serializer<ThirdPartyColor> {
  static void encode(const ThirdPartyColor& c, std::string& out) {
    out.push_back(static_cast<char>(c.r));
    out.push_back(static_cast<char>(c.g));
    out.push_back(static_cast<char>(c.b));
  }
  static ThirdPartyColor decode(std::string_view bytes) {
    if (bytes.size() != 3) {
      throw std::runtime_error("a color is three bytes");
    }
    return {static_cast<unsigned char>(bytes[0]), static_cast<unsigned char>(bytes[1]),
            static_cast<unsigned char>(bytes[2])};
  }
};

namespace {
template <typename S, typename T> T roundTrip(const T& value) {
  std::string bytes = "prefix";
  S::encode(value, bytes);
  REQUIRE(bytes.compare(0, 6, "prefix") == 0); // encode appends
  return S::decode(std::string_view(bytes).substr(6));
}
} // namespace

TEST_CASE("JSON round-trips structs defined with the nlohmann macros, no glue needed") {
  const Product p{7, "Kettle \"deluxe\"", 24.5, {"kitchen", "sale"}};
  CHECK(roundTrip<cacheaside::Serializer<Product>>(p) == p);
  CHECK(roundTrip<cacheaside::Serializer<Point>>(Point{3, -4}) == Point{3, -4});
  const std::vector<Product> list{p, Product{8, "Toaster", 39, {}}};
  CHECK(roundTrip<cacheaside::Serializer<std::vector<Product>>>(list) == list);
  const std::map<std::string, int> m{{"a", 1}, {"b", 2}};
  CHECK(roundTrip<cacheaside::Serializer<std::map<std::string, int>>>(m) == m);
}

TEST_CASE("MessagePack and CBOR are drop-in alternatives, smaller than JSON") {
  const std::vector<Product> list(
      20, Product{123456, "Wireless Noise-Cancelling Headphones", 99.99, {"audio"}});
  CHECK(roundTrip<cacheaside::MsgPackSerializer<std::vector<Product>>>(list) == list);
  CHECK(roundTrip<cacheaside::CborSerializer<std::vector<Product>>>(list) == list);
  std::string json, msgpack, cbor;
  cacheaside::JsonSerializer<std::vector<Product>>::encode(list, json);
  cacheaside::MsgPackSerializer<std::vector<Product>>::encode(list, msgpack);
  cacheaside::CborSerializer<std::vector<Product>>::encode(list, cbor);
  CHECK(msgpack.size() < json.size());
  CHECK(cbor.size() < json.size());
}

TEST_CASE("std::string is stored byte for byte, NUL and invalid UTF-8 included") {
  const std::string raw = std::string(1, '\0') + "\xff\xfe not json \"\n";
  std::string bytes;
  cacheaside::Serializer<std::string>::encode(raw, bytes);
  CHECK(bytes == raw);
  CHECK(cacheaside::Serializer<std::string>::decode(bytes) == raw);
}

TEST_CASE("a type the user does not own can get its own Serializer specialization") {
  const ThirdPartyColor c{1, 2, 250};
  const ThirdPartyColor back = roundTrip<cacheaside::Serializer<ThirdPartyColor>>(c);
  CHECK((back.r == 1 && back.g == 2 && back.b == 250));
}

TEST_CASE("bytes that are not the expected encoding throw instead of decoding") {
  using S = cacheaside::Serializer<Product>;
  CHECK_THROWS(S::decode("not json"));
  CHECK_THROWS(S::decode("{\"id\":\"seven\",\"name\":1}"));
  CHECK_THROWS(S::decode("{\"id\":1}"));
  CHECK_THROWS(S::decode(""));
  CHECK_THROWS(cacheaside::MsgPackSerializer<Product>::decode("\xc1"));
  CHECK_THROWS(cacheaside::CborSerializer<Product>::decode("\xff\xff"));
}

TEST_CASE("serializability is detected at compile time") {
  STATIC_REQUIRE(cacheaside::detail::kJsonSerializable<Product>);
  STATIC_REQUIRE(cacheaside::detail::kJsonSerializable<std::vector<Point>>);
  STATIC_REQUIRE(cacheaside::detail::kJsonSerializable<std::map<std::string, std::vector<int>>>);
  STATIC_REQUIRE_FALSE(cacheaside::detail::kJsonSerializable<NotSerializable>);
}
