#include "support/catch.hpp"

#include <cacheaside/codec/record.hpp>
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
  } else if (c.argv[0] == "TIME") {
    return; // no key: routed to its key's server
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
  all.push_back(store.takeRefresh(keys, "lease", "123", false));
  all.push_back(store.takeRefresh(keys, "lease", "12345678", true));
  all.push_back(Store::refreshFill(keys, "lease", "record", "100"));
  Store::set(keys, "record", "100", all);
  all.push_back(Store::invalidate(keys));
  for (const Command& c : all) {
    checkOneSlot(c);
  }
}

Reply timeReply(std::string seconds, std::string micros) {
  Reply r = reply(Reply::Type::Array);
  r.elements = {reply(Reply::Type::String, std::move(seconds)),
                reply(Reply::Type::String, std::move(micros))};
  return r;
}

TEST_CASE("store: the lookup is SET NX PX GET with the lease time, and TIME when a sample is due") {
  const Store store(1500ms);
  const auto keys = cacheaside::store::keysFor("ns", "k");
  std::vector<Command> look;
  store.lookup(keys, "LEASE", false, look); // no freshness judged: no clock needed
  REQUIRE(look.size() == 1);
  CHECK(look[0].argv == cacheaside::Argv{"SET", keys.value, "LEASE", "NX", "PX", "1500", "GET"});
  look.clear();
  store.lookup(keys, "LEASE", true, look); // the first sample
  REQUIRE(look.size() == 2);
  CHECK(look[1].argv == cacheaside::Argv{"TIME"});
  CHECK(look[1].key == keys.value);
  look.clear();
  store.lookup(keys, "LEASE", true, look); // claimed by the lookup before: one command
  CHECK(look.size() == 1);

  const cacheaside::store::ServerClock::Clock::time_point t0{std::chrono::hours(5)};
  std::vector<Reply> replies{Reply{}, timeReply("1700000000", "250999")};
  CHECK(store.parseLookup(replies, t0).kind == Lookup::Kind::Empty);
  CHECK(store.clock().serverNowMillis(t0) == 1700000000250);
  CHECK(store.clock().serverNowMillis(t0 + 29s) == 1700000029250);
  look.clear();
  store.lookup(keys, "LEASE", true, look);
  CHECK(look.size() == 1);                                         // the sample is fresh
  CHECK(store.clock().serverNowMillis(t0 + 31s) == 1700000031250); // still used, and now due
  look.clear();
  store.lookup(keys, "LEASE", true, look);
  CHECK(look.size() == 2);
  look.clear();
  store.lookup(keys, "LEASE", true, look);
  CHECK(look.size() == 1);
}

TEST_CASE("store: the server clock follows TIME replies, whatever the local clock reads") {
  using cacheaside::store::ServerClock;
  const ServerClock::Clock::time_point early{std::chrono::seconds(10)};
  const ServerClock::Clock::time_point late{std::chrono::hours(1000)};
  ServerClock a, b;
  CHECK_FALSE(a.serverNowMillis(early));
  a.sample(timeReply("1700000000", "0"), early);
  b.sample(timeReply("1700000000", "0"), late);
  CHECK(a.serverNowMillis(early + 1500ms) == 1700000001500);
  CHECK(b.serverNowMillis(late + 1500ms) == 1700000001500);
  // A later reply that says the server is less far ahead was delayed on its way (a busy
  // machine): it does not hold the estimate back, until the estimate has aged by 1 ms a second.
  b.sample(timeReply("1700000001", "900000"), late + 2s); // 100 ms late
  CHECK(b.serverNowMillis(late + 2s) == 1700000001998);
  b.sample(timeReply("1700000012", "0"), late + 12s); // on time, and 10 ms of age allowed
  CHECK(b.serverNowMillis(late + 12s) == 1700000012000);
  b.sample(timeReply("1700000600", "0"), late + 612s);      // the server's clock went back 12 s
  CHECK(b.serverNowMillis(late + 612s) == 1700000611400);   // followed at 1 ms a second
  b.sample(timeReply("1700000700", "500000"), late + 700s); // and forward at once
  CHECK(b.serverNowMillis(late + 700s) == 1700000700500);
  // Anything but a TIME reply leaves the sample as it was.
  for (const Reply& bad : {reply(Reply::Type::Integer, {}, 5), timeReply("x", "0"),
                           timeReply("1700000000", "1000000"), timeReply("-3", "0"), Reply{}}) {
    a.sample(bad, late);
    CHECK(a.serverNowMillis(early) == 1700000000000);
  }
}

TEST_CASE("store: a record with an expiry stamp field is written with the stamp's offset") {
  const auto keys = cacheaside::store::keysFor("ns", "k");
  std::string stamped;
  cacheaside::envelope::appendHeader(stamped, cacheaside::EntryKind::Value, 0, 0, 0,
                                     cacheaside::envelope::kUnsetExpiryStamp);
  stamped += "payload";
  const std::string plain = cacheaside::codec::negativeRecord(0);
  REQUIRE(cacheaside::envelope::hasExpiryStampSlot(stamped));
  REQUIRE_FALSE(cacheaside::envelope::hasExpiryStampSlot(plain));

  CHECK(Store::fill(keys.value, "t", stamped, "100").argv.back() == "17");
  CHECK(Store::fill(keys.value, "t", plain, "100").argv.back() == "100");
  CHECK(Store::refreshFill(keys, "t", stamped, "100").argv.back() == "17");
  CHECK(Store::refreshFill(keys, "t", plain, "100").argv.back() == "100");
  std::vector<Command> set;
  Store::set(keys, stamped, "100", set);
  REQUIRE(set.size() == 1);
  CHECK(set[0].argv.at(1) == scripts::set().sha1());
  CHECK(set[0].argv.back() == "17");
}

TEST_CASE("store: lookup replies are classified") {
  const Store store(1s);
  std::vector<Reply> replies; // a Lookup's bytes view into the replies it was parsed from
  const cacheaside::store::ServerClock::Clock::time_point now{};
  const auto parse = [&](Reply first) {
    replies = {std::move(first)};
    return store.parseLookup(replies, now);
  };
  Lookup l = parse(reply(Reply::Type::String, "bytes"));
  CHECK(l.kind == Lookup::Kind::Record);
  CHECK(l.bytes == "bytes");
  CHECK(l.pttl == -1); // the server did not say
  replies = {reply(Reply::Type::Array)};
  replies[0].elements = {reply(Reply::Type::String, "bytes"), reply(Reply::Type::Integer, {}, 77)};
  l = store.parseLookup(replies, now); // the scripted lookup says
  CHECK(l.kind == Lookup::Kind::Record);
  CHECK(l.pttl == 77);
  CHECK(parse(Reply{}).kind == Lookup::Kind::Empty);
  CHECK(parse(reply(Reply::Type::Error, "WRONGTYPE x")).kind == Lookup::Kind::WrongType);
  for (const char* refusal : {"OOM x", "MISCONF x", "READONLY x", "NOREPLICAS x"}) {
    CHECK(parse(reply(Reply::Type::Error, refusal)).kind == Lookup::Kind::WriteRefused);
  }
  CHECK(parse(reply(Reply::Type::Error, "LOADING x")).kind == Lookup::Kind::Error);
  CHECK(parse(reply(Reply::Type::Integer, {}, 1)).kind == Lookup::Kind::Error);
  CHECK(store.parseLookup({}, now).kind == Lookup::Kind::Error);
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
