#include "db.hpp"

#include <sqlite3.h>

#include <memory>
#include <thread>

namespace products {
namespace {

struct ConnectionCloser {
  void operator()(sqlite3* db) const noexcept { sqlite3_close_v2(db); }
};
struct StatementFinalizer {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};
using Connection = std::unique_ptr<sqlite3, ConnectionCloser>;

[[noreturn]] void fail(sqlite3* db, const std::string& what) {
  throw DbError("sqlite: " + what + ": " + (db != nullptr ? sqlite3_errmsg(db) : "out of memory"));
}

// Only the constructor creates the file: a file removed under a running service is a database
// failure, not a new empty database.
Connection open(const std::string& path, bool create = false) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &raw,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0), nullptr);
  Connection db(raw);
  if (rc != SQLITE_OK) {
    fail(raw, "open " + path);
  }
  sqlite3_busy_timeout(raw, 5000);
  return db;
}

// A prepared statement with bound parameters; every SQL statement goes through one.
class Statement {
public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &raw, nullptr) != SQLITE_OK) {
      fail(db, std::string("prepare ") + sql);
    }
    stmt_.reset(raw);
  }

  Statement& bind(int index, std::int64_t value) {
    check(sqlite3_bind_int64(stmt_.get(), index, value), "bind");
    return *this;
  }
  Statement& bind(int index, double value) {
    check(sqlite3_bind_double(stmt_.get(), index, value), "bind");
    return *this;
  }
  Statement& bind(int index, const std::string& value) {
    check(sqlite3_bind_text(stmt_.get(), index, value.data(), static_cast<int>(value.size()),
                            SQLITE_TRANSIENT),
          "bind");
    return *this;
  }

  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(stmt_.get());
    if (rc == SQLITE_ROW) {
      return true;
    }
    if (rc != SQLITE_DONE) {
      fail(db_, "step");
    }
    return false;
  }

  void reset() {
    sqlite3_reset(stmt_.get());
    sqlite3_clear_bindings(stmt_.get());
  }

  std::int64_t integer(int column) const { return sqlite3_column_int64(stmt_.get(), column); }
  double real(int column) const { return sqlite3_column_double(stmt_.get(), column); }
  std::string text(int column) const {
    const auto* p = sqlite3_column_text(stmt_.get(), column);
    const int n = sqlite3_column_bytes(stmt_.get(), column);
    return p == nullptr
               ? std::string()
               : std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
  }

  Product product() const { return Product{integer(0), text(1), text(2), real(3)}; }

private:
  void check(int rc, const char* what) {
    if (rc != SQLITE_OK) {
      fail(db_, what);
    }
  }

  sqlite3* db_;
  std::unique_ptr<sqlite3_stmt, StatementFinalizer> stmt_;
};

void run(sqlite3* db, const char* sql) {
  Statement s(db, sql);
  while (s.step()) {
  }
}

// Commits on commit(), rolls back otherwise.
class Transaction {
public:
  explicit Transaction(sqlite3* db) : db_(db) { run(db_, "BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (!done_) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    run(db_, "COMMIT");
    done_ = true;
  }

private:
  sqlite3* db_;
  bool done_ = false;
};

constexpr const char* kSelect = "SELECT id, name, category, price FROM products";

void seed(sqlite3* db, int count) {
  static const char* const kCategories[] = {"books",  "electronics", "garden", "kitchen",
                                            "sports", "toys",        "music",  "clothing"};
  static const char* const kAdjectives[] = {"Classic", "Compact", "Deluxe", "Eco",
                                            "Premium", "Smart",   "Travel", "Vintage"};
  static const char* const kNouns[] = {"Set", "Kit", "Pack", "Edition", "Bundle", "Model"};
  Statement insert(db, "INSERT INTO products (name, category, price) VALUES (?1, ?2, ?3)");
  for (int i = 0; i < count; ++i) {
    const std::string category = kCategories[i % 8];
    const std::string name = std::string(kAdjectives[(i / 8) % 8]) + ' ' + category + ' ' +
                             kNouns[(i / 64) % 6] + ' ' + std::to_string(i + 1);
    const double price = static_cast<double>((i * 7919) % 20000 + 99) / 100.0;
    insert.bind(1, name).bind(2, category).bind(3, price);
    insert.step();
    insert.reset();
  }
}

} // namespace

Database::Database(std::string path, std::chrono::milliseconds delay, int seedCount)
    : path_(std::move(path)), delay_(delay) {
  Connection db = open(path_, true);
  run(db.get(), "PRAGMA journal_mode=WAL");
  Transaction tx(db.get());
  bool empty = true;
  {
    Statement exists(db.get(), "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'products'");
    exists.step();
    empty = exists.integer(0) == 0;
  }
  if (empty) {
    run(db.get(), "CREATE TABLE products (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT "
                  "NULL, category TEXT NOT NULL, price REAL NOT NULL)");
    run(db.get(), "CREATE INDEX products_category ON products (category, id)");
    seed(db.get(), seedCount);
  }
  tx.commit();
}

void Database::slow() {
  queries_.fetch_add(1, std::memory_order_relaxed);
  if (delay_.count() > 0) {
    std::this_thread::sleep_for(delay_);
  }
}

std::vector<Product> Database::list(const std::string& category) {
  slow();
  Connection db = open(path_);
  std::vector<Product> out;
  if (category.empty()) {
    Statement s(db.get(), "SELECT id, name, category, price FROM products ORDER BY id");
    while (s.step()) {
      out.push_back(s.product());
    }
  } else {
    Statement s(db.get(),
                "SELECT id, name, category, price FROM products WHERE category = ?1 ORDER BY id");
    s.bind(1, category);
    while (s.step()) {
      out.push_back(s.product());
    }
  }
  return out;
}

std::optional<Product> Database::find(std::int64_t id) {
  slow();
  Connection db = open(path_);
  Statement s(db.get(), (std::string(kSelect) + " WHERE id = ?1").c_str());
  s.bind(1, id);
  if (!s.step()) {
    return std::nullopt;
  }
  return s.product();
}

Product Database::create(const ProductInput& input) {
  slow();
  Connection db = open(path_);
  Statement s(db.get(), "INSERT INTO products (name, category, price) VALUES (?1, ?2, ?3) "
                        "RETURNING id, name, category, price");
  s.bind(1, input.name).bind(2, input.category).bind(3, input.price);
  if (!s.step()) {
    fail(db.get(), "insert returned no row");
  }
  Product created = s.product();
  while (s.step()) {
  }
  return created;
}

std::optional<std::pair<Product, Product>> Database::update(std::int64_t id,
                                                            const ProductInput& input) {
  slow();
  Connection db = open(path_);
  Transaction tx(db.get());
  Statement before(db.get(), (std::string(kSelect) + " WHERE id = ?1").c_str());
  before.bind(1, id);
  if (!before.step()) {
    return std::nullopt;
  }
  Product old = before.product();
  before.reset();
  Statement s(db.get(), "UPDATE products SET name = ?1, category = ?2, price = ?3 WHERE id = ?4 "
                        "RETURNING id, name, category, price");
  s.bind(1, input.name).bind(2, input.category).bind(3, input.price).bind(4, id);
  if (!s.step()) {
    fail(db.get(), "update returned no row");
  }
  Product updated = s.product();
  while (s.step()) {
  }
  tx.commit();
  return std::make_pair(std::move(old), std::move(updated));
}

std::optional<Product> Database::remove(std::int64_t id) {
  slow();
  Connection db = open(path_);
  Statement s(db.get(), "DELETE FROM products WHERE id = ?1 RETURNING id, name, category, price");
  s.bind(1, id);
  if (!s.step()) {
    return std::nullopt;
  }
  Product removed = s.product();
  while (s.step()) {
  }
  return removed;
}

} // namespace products
