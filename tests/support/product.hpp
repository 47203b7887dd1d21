#pragma once
// A value type for integration tests.

#include <nlohmann/json.hpp>

#include <string>

namespace testsupport {

struct Product {
  int id = 0;
  std::string name;
  std::string category;
  double price = 0;
  NLOHMANN_DEFINE_TYPE_INTRUSIVE(Product, id, name, category, price)
  bool operator==(const Product& o) const {
    return id == o.id && name == o.name && category == o.category && price == o.price;
  }
};

inline Product product(int id) {
  return Product{id, "product " + std::to_string(id), "books", 10.0 + id};
}

} // namespace testsupport
