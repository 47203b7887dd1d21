// The get-or-load decisions, stepped by hand with scripted replies: no Redis, no clock, no
// randomness but what each test passes in.
#include "support/catch.hpp"

#include <cacheaside/codec/record.hpp>
#include <cacheaside/flow/get_flow.hpp>
#include <cacheaside/flow/refresh_flow.hpp>

#include <chrono>
#include <map>
#include <string>
#include <vector>

using cacheaside::Counter;
using cacheaside::EntryKind;
using cacheaside::Reply;
using cacheaside::flow::Action;
using cacheaside::flow::GetFlow;
using cacheaside::flow::Loaded;
using cacheaside::flow::RefreshFlow;
using Kind = cacheaside::flow::Action::Kind;
namespace scripts = cacheaside::store::scripts;
using namespace std::chrono_literals;

namespace {

Reply str(std::string s) {
  Reply r;
  r.type = Reply::Type::String;
  r.str = std::move(s);
  return r;
}
Reply integer(long long n) {
  Reply r;
  r.type = Reply::Type::Integer;
  r.integer = n;
  return r;
}
Reply error(std::string s) {
  Reply r;
  r.type = Reply::Type::Error;
  r.str = std::move(s);
  return r;
}
Reply nil() {
  return Reply{};
}

// A record as earlier versions wrote it: no expiry stamp.
std::string record(EntryKind kind, std::uint32_t loadMillis = 0, std::uint32_t stale = 0,
                   const std::string& payload = "") {
  std::string out;
  cacheaside::envelope::appendHeader(out, kind, loadMillis, stale);
  return out + payload;
}

// The server's clock when the fixtures' replies arrive (local time t0), ms since the epoch.
constexpr long long kServerNow = 1700000000000;

Reply timeReply(long long serverMillis) {
  Reply r;
  r.type = Reply::Type::Array;
  r.elements = {str(std::to_string(serverMillis / 1000)),
                str(std::to_string(serverMillis % 1000 * 1000))};
  return r;
}

// A value record as the server stores it: stamped to expire pttl ms after kServerNow.
std::string stamped(std::uint32_t loadMillis, std::uint32_t stale, const std::string& payload,
                    long long pttl) {
  std::string stamp(cacheaside::envelope::kUnsetExpiryStamp);
  const auto at = static_cast<std::uint64_t>(kServerNow + pttl);
  for (std::size_t i = 0; i < 8; ++i) {
    stamp[3 + i] = static_cast<char>((at >> (8 * i)) & 0xFF);
  }
  std::string out;
  cacheaside::envelope::appendHeader(out, EntryKind::Value, loadMillis, stale, 0, stamp);
  return out + payload;
}

struct Sink final : cacheaside::flow::Sink {
  std::map<Counter, int> counts;
  std::vector<cacheaside::EventType> events;
  void count(Counter c) noexcept override { ++counts[c]; }
  void event(cacheaside::EventType type, std::string_view) noexcept override {
    events.push_back(type);
  }
  int operator[](Counter c) { return counts[c]; }
};

// One flow with its collaborators.
struct Fixture {
  cacheaside::store::Store store{5s};
  cacheaside::store::Keys keys = cacheaside::store::keysFor("ns", "k");
  cacheaside::flow::Settings settings;
  Sink sink;
  cacheaside::flow::Clock::time_point t0{};

  // The store's clock has a sample: kServerNow at t0.
  Fixture() {
    settings.entry.waitBudget = 100ms;
    store.parseLookup({nil(), timeReply(kServerNow)}, t0);
  }
};

bool runs(const Action& a, const cacheaside::Script& script) {
  return a.kind == Kind::Send && !a.commands->empty() &&
         a.commands->front().argv.at(0) == "EVALSHA" &&
         a.commands->front().argv.at(1) == script.sha1();
}

Loaded value(std::string rec) {
  Loaded l;
  l.kind = Loaded::Kind::Value;
  l.record = std::move(rec);
  l.took = 3ms;
  return l;
}
Loaded of(Loaded::Kind kind) {
  Loaded l;
  l.kind = kind;
  return l;
}

} // namespace

TEST_CASE("flow: a hit is one command (SET NX GET), one decode, freshness from the stamp") {
  Fixture f;
  GetFlow first(f.store, f.keys, f.settings, f.sink);
  Action a = first.start(); // the store's first lookup asks the server's TIME along
  REQUIRE(a.commands->size() == 2);
  CHECK(a.commands->at(1).argv.at(0) == "TIME");
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  a = flow.start();
  REQUIRE(a.kind == Kind::Send);
  REQUIRE(a.commands->size() == 1);
  CHECK(a.commands->at(0).argv.at(0) == "SET");
  CHECK(a.commands->at(0).key == f.keys.value);
  a = flow.onReplies({str(stamped(10, 0, "{}", 60000))}, f.t0 + 250ms);
  REQUIRE(a.kind == Kind::Decode);
  CHECK(a.record->payload == "{}");
  a = flow.onDecoded(true, 0.5);
  CHECK(a.kind == Kind::Done);
  CHECK(flow.result() == GetFlow::Result::Hit);
  CHECK(flow.refresh() == cacheaside::flow::Refresh::None);
  CHECK(flow.pttl() == 59750);
  CHECK(flow.expiresAt() == static_cast<std::uint64_t>(kServerNow + 60000));
  CHECK(f.sink[Counter::hits] == 1);
  CHECK(f.sink[Counter::misses] == 0);
}

TEST_CASE("flow: a stamped record is judged by the server's clock, whatever the local one reads") {
  for (const auto shift : {-10min, 0min, 10min}) {
    Fixture f;
    f.t0 += 24h + shift;
    const cacheaside::store::Store store(5s); // a host whose clock reads t0 when the server's
    store.parseLookup({nil(), timeReply(kServerNow)}, f.t0); // reads kServerNow
    f.settings.xfetchBeta = 0;
    f.settings.entry.staleWindow = 10s;
    GetFlow flow(store, f.keys, f.settings, f.sink);
    flow.start();
    REQUIRE(flow.onReplies({str(stamped(0, 10000, "v", 12000))}, f.t0 + 3s).kind == Kind::Decode);
    flow.onDecoded(true, 0.5);
    CHECK(flow.pttl() == 9000);
    CHECK(flow.refresh() == cacheaside::flow::Refresh::Stale);
  }
}

TEST_CASE("flow: a record of an earlier version (no stamp) asks the server's PTTL") {
  Fixture f;
  f.settings.xfetchBeta = 0;
  f.settings.entry.staleWindow = 10s;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  Action a = flow.onReplies({str(record(EntryKind::Value, 0, 10000, "old"))}, f.t0);
  REQUIRE(a.kind == Kind::Send);
  REQUIRE(a.commands->size() == 1);
  CHECK(a.commands->front().argv == cacheaside::Argv{"PTTL", f.keys.value});
  a = flow.onReplies({integer(4000)}, f.t0);
  REQUIRE(a.kind == Kind::Decode);
  CHECK(a.record->payload == "old"); // still the bytes the lookup read
  flow.onDecoded(true, 0.5);
  CHECK(flow.pttl() == 4000);
  CHECK(flow.refresh() == cacheaside::flow::Refresh::Stale);
  CHECK(flow.expiresAt() == 0);

  GetFlow lost(f.store, f.keys, f.settings, f.sink); // the PTTL lost: served, freshness unknown
  lost.start();
  lost.onReplies({str(record(EntryKind::Value, 0, 10000, "old"))}, f.t0);
  REQUIRE(lost.onTransportError().kind == Kind::Decode);
  lost.onDecoded(true, 0.5);
  CHECK(lost.refresh() == cacheaside::flow::Refresh::None);

  f.settings.entry.staleWindow = 0s; // nothing judges freshness: no PTTL
  GetFlow plain(f.store, f.keys, f.settings, f.sink);
  plain.start();
  CHECK(plain.onReplies({str(record(EntryKind::Value, 0, 0, "old"))}, f.t0).kind == Kind::Decode);
}

TEST_CASE("flow: without XFetch or a stale window the lookup is one command") {
  Fixture f;
  f.settings.xfetchBeta = 0;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  CHECK(flow.start().commands->size() == 1);
}

TEST_CASE("flow: an empty key is leased to the caller, who loads and fills through the lease") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  const Action look = flow.start();
  const std::string lease(look.commands->at(0).argv.at(2));
  Action a = flow.onReplies({nil(), integer(-2)}, f.t0);
  REQUIRE(a.kind == Kind::Load);
  CHECK(a.encode);
  CHECK(a.renew.key == f.keys.value);
  CHECK(a.renew.token == lease);
  a = flow.onLoaded(value("RECORD"), 0.5);
  REQUIRE(runs(a, scripts::fill()));
  const auto& argv = a.commands->front().argv;
  CHECK(argv.at(3) == f.keys.value);
  CHECK(argv.at(4) == lease);
  CHECK(argv.at(5) == "RECORD");
  a = flow.onReplies({integer(1)}, f.t0);
  CHECK(a.kind == Kind::Done);
  CHECK(flow.result() == GetFlow::Result::Loaded);
  CHECK(f.sink[Counter::misses] == 1);
  CHECK_FALSE(flow.leftBehind());
}

TEST_CASE("flow: a fill refused because the key was invalidated is counted, nothing else") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  flow.onReplies({nil(), integer(-2)}, f.t0);
  flow.onLoaded(value("R"), 0.5);
  CHECK(flow.onReplies({integer(0)}, f.t0).kind == Kind::Done);
  CHECK(f.sink[Counter::fencedWrites] == 1);
  CHECK(flow.fenced());
  CHECK(flow.result() == GetFlow::Result::Loaded);
}

TEST_CASE("flow: a fill that meets an error reply gives the lease up, and a lost one leaves it") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  flow.onReplies({nil(), integer(-2)}, f.t0);
  flow.onLoaded(value("R"), 0.5);
  Action a = flow.onReplies({error("OOM command not allowed")}, f.t0);
  REQUIRE(runs(a, scripts::release()));
  a = flow.onTransportError();
  CHECK(a.kind == Kind::Done);
  REQUIRE(flow.leftBehind());
  CHECK(flow.leftBehind()->key == f.keys.value);
}

TEST_CASE("flow: a loader that throws gives the lease up") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  flow.onReplies({nil(), integer(-2)}, f.t0);
  Action a = flow.onLoaded(of(Loaded::Kind::Threw), 0.5);
  REQUIRE(runs(a, scripts::release()));
  CHECK(flow.onReplies({integer(1)}, f.t0).kind == Kind::Done);
  CHECK(flow.result() == GetFlow::Result::LoaderThrew);
}

TEST_CASE("flow: a lookup lost in transport loads uncached and leaves its lease to release") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  const std::string lease(flow.start().commands->at(0).argv.at(2));
  Action a = flow.onTransportError();
  REQUIRE(a.kind == Kind::Load);
  CHECK_FALSE(a.encode); // a fill would cost a second timeout
  CHECK(flow.onLoaded(of(Loaded::Kind::Value), 0.5).kind == Kind::Done);
  CHECK(flow.result() == GetFlow::Result::LoadedUncached);
  REQUIRE(flow.leftBehind());
  CHECK(flow.leftBehind()->token == lease);
}

TEST_CASE("flow: a peek (GET) answers a hit, and only a nil continues with the lease") {
  Fixture f;
  f.settings.peekFirst = true;
  GetFlow first(f.store, f.keys, f.settings, f.sink);
  Action a = first.start(); // the store's first look asks the server's TIME along
  REQUIRE(a.commands->size() == 2);
  CHECK(a.commands->at(1).argv.at(0) == "TIME");
  GetFlow hit(f.store, f.keys, f.settings, f.sink);
  a = hit.start();
  REQUIRE(a.kind == Kind::Send);
  REQUIRE(a.commands->size() == 1);
  CHECK(a.commands->at(0).argv == cacheaside::Argv{"GET", f.keys.value});
  a = hit.onReplies({str(stamped(10, 0, "{}", 60000))}, f.t0 + 250ms);
  REQUIRE(a.kind == Kind::Decode);
  CHECK(hit.onDecoded(true, 0.5).kind == Kind::Done);
  CHECK(hit.result() == GetFlow::Result::Hit);
  CHECK(hit.pttl() == 59750);

  GetFlow miss(f.store, f.keys, f.settings, f.sink);
  miss.start();
  a = miss.onReplies({nil()}, f.t0);
  REQUIRE(a.kind == Kind::Send);
  CHECK(a.commands->at(0).argv.at(0) == "SET"); // now the lease
  a = miss.onReplies({nil()}, f.t0);
  REQUIRE(a.kind == Kind::Load);
  CHECK(a.encode);
  CHECK(f.sink[Counter::hits] == 1);
  CHECK(f.sink[Counter::misses] == 1); // the nil peek counted nothing of its own

  // A peek lost in transport took no lease: loads uncached, leaves nothing to release.
  GetFlow lost(f.store, f.keys, f.settings, f.sink);
  lost.start();
  a = lost.onTransportError();
  REQUIRE(a.kind == Kind::Load);
  CHECK_FALSE(a.encode);
  CHECK(lost.onLoaded(of(Loaded::Kind::Value), 0.5).kind == Kind::Done);
  CHECK(lost.result() == GetFlow::Result::LoadedUncached);
  CHECK_FALSE(lost.leftBehind());
}

TEST_CASE("flow: a waiter polls with doubling pauses up to pollMax within its wait budget") {
  Fixture f;
  f.settings.pollInitial = 2ms;
  f.settings.pollMax = 8ms;
  f.settings.entry.waitBudget = 30ms;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  const std::string leased = record(EntryKind::Lease, 0, 0, "other's token");
  auto now = f.t0;
  std::vector<long long> pauses;
  Action a = flow.onReplies({str(leased), integer(4000)}, now);
  while (a.kind == Kind::Sleep) {
    pauses.push_back(a.pause.count());
    now += a.pause;
    a = flow.onSlept();
    REQUIRE(a.kind == Kind::Send);
    a = flow.onReplies({str(leased), integer(4000)}, now);
  }
  CHECK(pauses == std::vector<long long>{2, 4, 8, 8, 8});
  REQUIRE(a.kind == Kind::Load);
  CHECK_FALSE(a.encode);
  CHECK(f.sink[Counter::leaseWaits] == 1);
  CHECK(f.sink[Counter::waitTimeouts] == 1);
  CHECK(f.sink[Counter::misses] == 1);
}

TEST_CASE("flow: a waiter whose holder fills gets the value, and under Throw a timeout gives up") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  const std::string leased = record(EntryKind::Lease, 0, 0, "t");
  REQUIRE(flow.onReplies({str(leased), integer(4000)}, f.t0).kind == Kind::Sleep);
  flow.onSlept();
  REQUIRE(flow.onReplies({str(stamped(1, 0, "v", 9))}, f.t0).kind == Kind::Decode);
  CHECK(flow.onDecoded(true, 1.0).kind == Kind::Done);
  CHECK(f.sink[Counter::hits] == 0); // the first look was the miss

  Fixture g;
  g.settings.entry.waitBudget = 0ms;
  g.settings.entry.onWaitTimeout = cacheaside::WaitTimeoutPolicy::Throw;
  GetFlow impatient(g.store, g.keys, g.settings, g.sink);
  impatient.start();
  CHECK(impatient.onReplies({str(leased), integer(1)}, g.t0).kind == Kind::Done);
  CHECK(impatient.result() == GetFlow::Result::GaveUp);
}

TEST_CASE("flow: bytes that do not decode are taken over, a bounded number of times") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  Action a = flow.onReplies({str("someone else's bytes"), integer(-1)}, f.t0);
  int takeovers = 0;
  while (runs(a, scripts::takeover())) {
    ++takeovers;
    a = flow.onReplies({str("other bytes again")}, f.t0); // rewritten each time
  }
  CHECK(takeovers == GetFlow::kMaxTakeovers);
  REQUIRE(a.kind == Kind::Load);
  CHECK_FALSE(a.encode);
  CHECK(f.sink[Counter::decodeFailures] == GetFlow::kMaxTakeovers + 1);
}

TEST_CASE("flow: a payload the serializer rejects is taken over, and the takeover leases") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  REQUIRE(flow.onReplies({str(stamped(0, 0, "not json", 50))}, f.t0).kind == Kind::Decode);
  REQUIRE(runs(flow.onDecoded(false, 0.5), scripts::takeover()));
  const Action a = flow.onReplies({nil()}, f.t0);
  REQUIRE(a.kind == Kind::Load);
  CHECK(a.encode);
}

TEST_CASE("flow: a Redis that refuses writes is read with GET, hits served, nothing written") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  Action a = flow.onReplies({error("READONLY You can't write"), integer(100)}, f.t0);
  REQUIRE(a.kind == Kind::Send);
  CHECK(a.commands->front().argv.at(0) == "GET");
  REQUIRE(flow.onReplies({str(record(EntryKind::Value, 0, 0, "v"))}, f.t0).kind == Kind::Decode);
  CHECK(flow.onDecoded(true, 0.5).kind == Kind::Done);
  CHECK(f.sink[Counter::hits] == 1);
  CHECK(f.sink[Counter::redisErrors] == 1);

  GetFlow empty(f.store, f.keys, f.settings, f.sink);
  empty.start();
  empty.onReplies({error("OOM")}, f.t0);
  a = empty.onReplies({nil()}, f.t0);
  REQUIRE(a.kind == Kind::Load);
  CHECK_FALSE(a.encode);
}

TEST_CASE("flow: another program's key (WRONGTYPE) is left alone and loaded around") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  const Action a = flow.onReplies({error("WRONGTYPE Operation against a key"), integer(-1)}, f.t0);
  REQUIRE(a.kind == Kind::Load);
  CHECK_FALSE(a.encode);
}

TEST_CASE("flow: a server without SET NX GET switches the store to the scripted lookup") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  Action a = flow.onReplies({error("ERR syntax error"), integer(-2)}, f.t0);
  REQUIRE(runs(a, scripts::lookup()));
  CHECK(f.store.scriptedLookup());
  Reply found;
  found.type = Reply::Type::Array;
  found.elements = {str(record(EntryKind::Value, 40, 0, "v")), integer(123)};
  REQUIRE(flow.onReplies({found}, f.t0).kind == Kind::Decode);
  CHECK(flow.onDecoded(true, 0.5).kind == Kind::Done);
  CHECK(flow.pttl() == 123);
  GetFlow next(f.store, f.keys, f.settings, f.sink); // every later lookup is the script
  CHECK(runs(next.start(), scripts::lookup()));
}

TEST_CASE("flow: a cached \"not found\" is a hit, and replies of no known shape load uncached") {
  Fixture f;
  GetFlow flow(f.store, f.keys, f.settings, f.sink);
  flow.start();
  CHECK(flow.onReplies({str(record(EntryKind::Negative)), integer(5)}, f.t0).kind == Kind::Done);
  CHECK(flow.result() == GetFlow::Result::Negative);

  GetFlow odd(f.store, f.keys, f.settings, f.sink);
  odd.start();
  const Action a = odd.onReplies({integer(42)}, f.t0);
  REQUIRE(a.kind == Kind::Load);
  CHECK_FALSE(a.encode);
}

TEST_CASE("flow: a stale value asks for a refresh, and XFetch draws early ones") {
  Fixture f;
  GetFlow stale(f.store, f.keys, f.settings, f.sink);
  stale.start();
  stale.onReplies({str(stamped(0, 10000, "v", 4000))}, f.t0);
  stale.onDecoded(true, 0.5);
  CHECK(stale.refresh() == cacheaside::flow::Refresh::Stale);

  GetFlow due(f.store, f.keys, f.settings, f.sink);
  due.start();
  due.onReplies({str(stamped(1000, 0, "v", 500))}, f.t0);
  due.onDecoded(true, 0.1); // -1000 * ln(0.1) = 2303 ms >= 500 ms left
  CHECK(due.refresh() == cacheaside::flow::Refresh::Early);
}

TEST_CASE("refresh flow: the winner reloads, keeping the value alive, and writes back") {
  Fixture f;
  RefreshFlow flow(f.store, f.keys, f.settings, f.sink, 700);
  Action a = flow.start();
  REQUIRE(runs(a, scripts::takeRefresh()));
  CHECK(a.commands->front().argv.back() == "700"); // a record without a stamp: its PTTL
  RefreshFlow byStamp(f.store, f.keys, f.settings, f.sink, 700, 0x0102030405060708);
  const auto& argv = byStamp.start().commands->front().argv;
  CHECK(argv.at(argv.size() - 2) == std::string_view("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  CHECK(argv.back() == "17");
  a = flow.onReplies({integer(1)}, f.t0);
  REQUIRE(a.kind == Kind::Load);
  CHECK(a.renew.key == f.keys.refreshLease);
  CHECK(a.renew.keepAlive == f.keys.value);
  a = flow.onLoaded(value("NEW"), 0.5);
  REQUIRE(runs(a, scripts::refreshFill()));
  CHECK(flow.onReplies({integer(1)}, f.t0).kind == Kind::Done);
  CHECK(flow.result() == RefreshFlow::Result::Fresh);
  CHECK(f.sink[Counter::refreshes] == 1);
}

TEST_CASE("refresh flow: busy, already refreshed, gone and failed all serve what was read") {
  for (const long long reply : {0LL, -1LL, -2LL}) {
    Fixture f;
    RefreshFlow flow(f.store, f.keys, f.settings, f.sink, 700);
    flow.start();
    CHECK(flow.onReplies({integer(reply)}, f.t0).kind == Kind::Done);
    CHECK(flow.result() == RefreshFlow::Result::ServeCurrent);
  }
  Fixture f;
  RefreshFlow lost(f.store, f.keys, f.settings, f.sink, 700);
  lost.start();
  CHECK(lost.onTransportError().kind == Kind::Done);
  CHECK(lost.result() == RefreshFlow::Result::ServeCurrent);
  REQUIRE(lost.leftBehind());
  CHECK(lost.leftBehind()->key == f.keys.refreshLease);
}

TEST_CASE("refresh flow: a loader that throws turns the lease into a fail-safe throttle") {
  Fixture f;
  f.settings.failSafeThrottle = 1234ms;
  RefreshFlow flow(f.store, f.keys, f.settings, f.sink, 700);
  flow.start();
  flow.onReplies({integer(1)}, f.t0);
  const Action a = flow.onLoaded(of(Loaded::Kind::Threw), 0.5);
  REQUIRE(runs(a, scripts::fill()));
  CHECK(a.commands->front().argv.at(3) == f.keys.refreshLease);
  CHECK(a.commands->front().argv.back() == "1234");
  CHECK(flow.onReplies({integer(1)}, f.t0).kind == Kind::Done);
  CHECK(flow.result() == RefreshFlow::Result::FailSafe);
  CHECK(f.sink[Counter::failSafes] == 1);
}

TEST_CASE("flow: a lent lease token is the one its lookup, renewal, fill and release carry") {
  Fixture f;
  const std::string lent = cacheaside::codec::leaseRecord();
  GetFlow flow(f.store, f.keys, f.settings, f.sink, lent);
  CHECK(flow.start().commands->at(0).argv.at(2) == lent);
  Action a = flow.onReplies({nil(), integer(-2)}, f.t0);
  REQUIRE(a.kind == Kind::Load);
  CHECK(a.renew.token == lent);
  a = flow.onLoaded(value("RECORD"), 0.5);
  REQUIRE(runs(a, scripts::fill()));
  CHECK(a.commands->front().argv.at(4) == lent);
  a = flow.onReplies({error("OOM command not allowed")}, f.t0); // the fill failed: give it up
  REQUIRE(runs(a, scripts::release()));
  CHECK(a.commands->front().argv.at(4) == lent);
  CHECK(flow.onTransportError().kind == Kind::Done);
  REQUIRE(flow.leftBehind());
  CHECK(flow.leftBehind()->token == lent);
}
