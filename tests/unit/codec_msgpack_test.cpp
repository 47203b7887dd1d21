#include "support/catch.hpp"

#include <cacheaside/codec/msgpack.hpp>
#include <cacheaside/serializer.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace {

struct Product {
  int id = 0;
  std::string name;
  double price = 0;
  std::vector<std::string> tags;
  MSGPACK_DEFINE(id, name, price, tags)
  bool operator==(const Product& o) const {
    return id == o.id && name == o.name && price == o.price && tags == o.tags;
  }
};

struct Named {
  std::string name;
  std::optional<int> stock;
  MSGPACK_DEFINE_MAP(name, stock)
  bool operator==(const Named& o) const { return name == o.name && stock == o.stock; }
};

enum class Colour { red, green };

// A type the user does not own, adapted from outside as msgpack's documentation shows.
struct Point {
  int x = 0;
  int y = 0;
  bool operator==(const Point& o) const { return x == o.x && y == o.y; }
};

struct NoAdaptor {
  int fd = -1;
};

} // namespace

MSGPACK_ADD_ENUM(Colour);

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <> struct convert<Point> {
    const msgpack::object& operator()(const msgpack::object& o, Point& p) const {
      if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) {
        throw msgpack::type_error();
      }
      p = Point{o.via.array.ptr[0].as<int>(), o.via.array.ptr[1].as<int>()};
      return o;
    }
  };
  template <> struct pack<Point> {
    template <typename Stream> packer<Stream>& operator()(packer<Stream>& o, const Point& p) const {
      o.pack_array(2);
      o.pack(p.x);
      o.pack(p.y);
      return o;
    }
  };
  } // namespace adaptor
}
} // namespace msgpack

namespace {

template <typename T> T roundTrip(const T& value) {
  std::string bytes = "prefix";
  cacheaside::MsgpackSerializer<T>::encode(value, bytes);
  REQUIRE(bytes.compare(0, 6, "prefix") == 0); // encode appends
  return cacheaside::MsgpackSerializer<T>::decode(std::string_view(bytes).substr(6));
}

const std::vector<Product> kList{Product{7, "Kettle \"deluxe\"", 24.5, {"kitchen", "sale"}},
                                 Product{8, std::string("nul \0 inside", 12), -0.25, {}}};

} // namespace

TEST_CASE("msgpack-cxx: MSGPACK_DEFINE structs and containers of them round-trip") {
  CHECK(roundTrip(kList.front()) == kList.front());
  CHECK(roundTrip(kList) == kList);
  const std::map<std::string, std::vector<Product>> byShelf{{"a", kList}, {"b", {}}};
  CHECK(roundTrip(byShelf) == byShelf);
  CHECK(roundTrip(std::vector<Product>{}).empty());
  const Named named{"kettle", std::nullopt};
  CHECK(roundTrip(named) == named);
  CHECK(roundTrip(Named{"toaster", 3}) == Named{"toaster", 3});
  const auto tuple = std::make_tuple(-(std::int64_t{1} << 40), std::string("x"), Colour::green);
  CHECK(roundTrip(tuple) == tuple);
  CHECK(roundTrip(std::string("\xff\xfe raw")) == "\xff\xfe raw");
}

TEST_CASE("msgpack-cxx: adaptor specializations of the user's own are used") {
  CHECK(roundTrip(Point{3, -4}) == Point{3, -4});
  const std::vector<Point> points{{1, 2}, {3, 4}};
  CHECK(roundTrip(points) == points);
  std::string bytes;
  cacheaside::MsgpackSerializer<Point>::encode(Point{1, 2}, bytes);
  CHECK(bytes == "\x92\x01\x02"); // the specialization's layout: a 2-array
}

TEST_CASE("msgpack-cxx: the encoding is compact, smaller than nlohmann's MessagePack") {
  std::string fast;
  cacheaside::MsgpackSerializer<std::vector<Product>>::encode(kList, fast);
  // MSGPACK_DEFINE writes arrays, without the member names nlohmann's maps repeat.
  CHECK(fast.size() < 80);
  CHECK(static_cast<unsigned char>(fast[0]) == 0x92);
}

TEST_CASE("msgpack-cxx: bytes that are not one value of T's shape throw std::exception") {
  using S = cacheaside::MsgpackSerializer<std::vector<Product>>;
  std::string good;
  S::encode(kList, good);
  const auto throwsStd = [](std::string_view bytes) {
    try {
      S::decode(bytes);
    } catch (const std::exception&) {
      return true;
    }
    return false;
  };
  CHECK(throwsStd(""));
  CHECK(throwsStd("\xc1"));                          // never used in MessagePack
  CHECK(throwsStd("{\"id\":1}"));                    // JSON text
  CHECK(throwsStd(good.substr(0, good.size() - 1))); // truncated
  CHECK(throwsStd(good + "\x01"));                   // trailing bytes
  CHECK(throwsStd("\x93\x01\x02\x03"));              // wrong shape: array of ints
  std::string nlohmann;
  cacheaside::MsgPackSerializer<std::vector<int>>::encode({1, 2}, nlohmann);
  CHECK_NOTHROW(cacheaside::MsgpackSerializer<std::vector<int>>::decode(nlohmann));
  // A length header claiming 4 G elements is refused before anything is allocated for them.
  CHECK(throwsStd(std::string("\xdd\xff\xff\xff\xff\x01", 6)));
  CHECK(throwsStd(std::string("\xdb\xff\xff\xff\xff"
                              "abc",
                              8)));
}

TEST_CASE("msgpack-cxx: which types have an adaptor is known at compile time") {
  using cacheaside::MsgpackAdapted;
  STATIC_REQUIRE(MsgpackAdapted<int>::value);
  STATIC_REQUIRE(MsgpackAdapted<std::string>::value);
  STATIC_REQUIRE(MsgpackAdapted<Product>::value);
  STATIC_REQUIRE(MsgpackAdapted<Named>::value);
  STATIC_REQUIRE(MsgpackAdapted<Point>::value);
  STATIC_REQUIRE(MsgpackAdapted<Colour>::value);
  STATIC_REQUIRE(MsgpackAdapted<std::vector<Product>>::value);
  STATIC_REQUIRE(MsgpackAdapted<std::map<std::string, std::optional<Point>>>::value);
  STATIC_REQUIRE_FALSE(MsgpackAdapted<NoAdaptor>::value);
  STATIC_REQUIRE_FALSE(MsgpackAdapted<std::vector<NoAdaptor>>::value);
  STATIC_REQUIRE_FALSE(MsgpackAdapted<std::map<std::string, NoAdaptor>>::value);
  STATIC_REQUIRE_FALSE(MsgpackAdapted<std::tuple<int, NoAdaptor>>::value);
}
