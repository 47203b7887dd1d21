#include "support/catch.hpp"

#include <cacheaside/store/store.hpp>

#include <chrono>
#include <string>
#include <vector>

using cacheaside::Command;
using cacheaside::Reply;
using cacheaside::store::hashSlot;
using cacheaside::store::Lookup;
using cacheaside::store::Store;
namespace scripts = cacheaside::store::scripts;
using namespace std::chrono_literals;

namespace {
Reply reply(Reply::Type type, std::string s = {}, long long n = 0) {
  Reply r;
  r.type = type;
  r.str = std::move(s);
  r.integer = n;
  return r;
}

// Every key a command names (for the commands the store builds) hashes to its routing key's slot.
void checkOneSlot(const Command& c) {
  CAPTURE(std::string(c.argv.at(0)));
  REQUIRE_FALSE(c.key.empty());
  std::vector<std::string_view> keys;
  if (c.argv[0] == "EVALSHA" || c.argv[0] == "EVAL") {
    const int n = std::stoi(std::string(c.argv.at(2)));
    keys.assign(c.argv.begin() + 3, c.argv.begin() + 3 + n);
  } else if (c.argv[0] == "DEL") {
    keys.assign(c.argv.begin() + 1, c.argv.end());
  } else {
    keys.push_back(c.argv.at(1));
  }
  for (const auto k : keys) {
    CHECK(hashSlot(k) == hashSlot(c.key));
  }
}
} // namespace

TEST_CASE("store: every command is routed by a key whose slot all its keys share") {
  const Store store(5s);
  const auto keys = cacheaside::store::keysFor("n{s}", "}odd{key");
  std::vector<Command> all;
  store.lookup(keys, "lease", true, all);
  all.push_back(store.get(keys));
  all.push_back(store.takeover(keys, "sha", "lease"));
  all.push_back(Store::fill(keys.value, "lease", "record", "100"));
  all.push_back(Store::release(keys.refreshLease, "lease"));
  all.push_back(store.renew(keys.refreshLease, keys.value, "lease"));
  all.push_back(store.renew(keys.value, {}, "lease"));
  all.push_back(store.takeRefresh(keys, "lease", "123"));
  all.push_back(Store::refreshFill(keys, "lease", "record", "100"));
  Store::set(keys, "record", "100", all);
  all.push_back(Store::invalidate(keys));
  for (const Command& c : all) {
    checkOneSlot(c);
  }
}

TEST_CASE("store: the lookup is SET NX PX GET with the lease time, and PTTL when asked") {
  const Store store(1500ms);
  const auto keys = cacheaside::store::keysFor("ns", "k");
  std::vector<Command> look;
  store.lookup(keys, "LEASE", true, look);
  REQUIRE(look.size() == 2);
  CHECK(look[0].argv == cacheaside::Argv{"SET", keys.value, "LEASE", "NX", "PX", "1500", "GET"});
  CHECK(look[1].argv == cacheaside::Argv{"PTTL", keys.value});
  look.clear();
  store.lookup(keys, "LEASE", false, look);
  CHECK(look.size() == 1);
}

TEST_CASE("store: lookup replies are classified") {
  const Store store(1s);
  std::vector<Reply> replies; // a Lookup's bytes view into the replies it was parsed from
  const auto parse = [&](Reply first, Reply second = reply(Reply::Type::Integer, {}, 77)) {
    replies = {std::move(first), std::move(second)};
    return store.parseLookup(replies);
  };
  Lookup l = parse(reply(Reply::Type::String, "bytes"));
  CHECK(l.kind == Lookup::Kind::Record);
  CHECK(l.bytes == "bytes");
  CHECK(l.pttl == 77);
  CHECK(parse(Reply{}).kind == Lookup::Kind::Empty);
  CHECK(parse(reply(Reply::Type::Error, "WRONGTYPE x")).kind == Lookup::Kind::WrongType);
  for (const char* refusal : {"OOM x", "MISCONF x", "READONLY x", "NOREPLICAS x"}) {
    CHECK(parse(reply(Reply::Type::Error, refusal)).kind == Lookup::Kind::WriteRefused);
  }
  CHECK(parse(reply(Reply::Type::Error, "LOADING x")).kind == Lookup::Kind::Error);
  CHECK(parse(reply(Reply::Type::Integer, {}, 1)).kind == Lookup::Kind::Error);
  CHECK(store.parseLookup({}).kind == Lookup::Kind::Error);
  CHECK_FALSE(store.scriptedLookup());
  CHECK(parse(reply(Reply::Type::Error, "ERR syntax error")).kind == Lookup::Kind::Unsupported);
  CHECK(store.scriptedLookup());
}

TEST_CASE("store: NOSCRIPT turns one of the store's EVALSHA commands into EVAL") {
  const Store store(1s);
  const auto keys = cacheaside::store::keysFor("ns", "k");
  Command c = Store::release(keys.value, "t");
  CHECK_FALSE(Store::fallBackToEval(reply(Reply::Type::Error, "ERR other"), c));
  REQUIRE(Store::fallBackToEval(reply(Reply::Type::Error, "NOSCRIPT No matching script"), c));
  CHECK(c.argv.at(0) == "EVAL");
  CHECK(c.argv.at(1) == scripts::release().source());
  Command foreign{keys.value, {"EVALSHA", "0000", "0"}};
  CHECK_FALSE(Store::fallBackToEval(reply(Reply::Type::Error, "NOSCRIPT x"), foreign));
}

TEST_CASE("store: write and refresh-lease replies are classified") {
  CHECK(Store::parseWrite(reply(Reply::Type::Integer, {}, 1)) == cacheaside::store::Write::Done);
  CHECK(Store::parseWrite(reply(Reply::Type::Integer, {}, 0)) == cacheaside::store::Write::Fenced);
  CHECK(Store::parseWrite(reply(Reply::Type::Error, "BUSY")) == cacheaside::store::Write::Failed);
  using cacheaside::store::RefreshLease;
  CHECK(Store::parseTakeRefresh(reply(Reply::Type::Integer, {}, 1)) == RefreshLease::Won);
  CHECK(Store::parseTakeRefresh(reply(Reply::Type::Integer, {}, 0)) == RefreshLease::Busy);
  CHECK(Store::parseTakeRefresh(reply(Reply::Type::Integer, {}, -1)) == RefreshLease::Refreshed);
  CHECK(Store::parseTakeRefresh(reply(Reply::Type::Integer, {}, -2)) == RefreshLease::Gone);
  CHECK(Store::parseTakeRefresh(reply(Reply::Type::Integer, {}, 9)) == RefreshLease::Failed);
  CHECK(Store::parseTakeRefresh(reply(Reply::Type::Error, "x")) == RefreshLease::Failed);
}
