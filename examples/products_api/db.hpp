#pragma once
// The products database: a SQLite file, created and seeded on first start, with an artificial
// delay before every query that stands for a slow production database.

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace products {

/// One product, as stored and as served.
struct Product {
  std::int64_t id = 0;
  std::string name;
  std::string category;
  double price = 0;
  NLOHMANN_DEFINE_TYPE_INTRUSIVE(Product, id, name, category, price)
};

/// What a client sends to create or replace a product.
struct ProductInput {
  std::string name;
  std::string category;
  double price = 0;
};

/// The database failed (cannot open, locked too long, disk full...): the service answers 503.
class DbError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The products table. Thread-safe: each operation opens its own connection (WAL mode), so that
/// the artificial delay of one request does not hold up the others.
class Database {
public:
  /// Opens (creating and seeding with seedCount products if it has no table) the file at path.
  /// Throws DbError.
  Database(std::string path, std::chrono::milliseconds delay, int seedCount = 1000);

  /// Products of a category (every product when category is empty), by id.
  std::vector<Product> list(const std::string& category);
  /// One product, or std::nullopt.
  std::optional<Product> find(std::int64_t id);
  /// Inserts a product and returns it with its new id.
  Product create(const ProductInput& input);
  /// Replaces a product; returns {before, after}, or std::nullopt when there is no such id.
  std::optional<std::pair<Product, Product>> update(std::int64_t id, const ProductInput& input);
  /// Deletes a product; returns what it was, or std::nullopt when there is no such id.
  std::optional<Product> remove(std::int64_t id);

  /// Queries run so far (each read or write counts once).
  std::uint64_t queries() const noexcept { return queries_.load(std::memory_order_relaxed); }

private:
  void slow();

  std::string path_;
  std::chrono::milliseconds delay_;
  std::atomic<std::uint64_t> queries_{0};
};

} // namespace products
