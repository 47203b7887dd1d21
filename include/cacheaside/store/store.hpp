#pragma once
/// \file store/store.hpp
/// The Redis protocol of the cache: builds every command it sends and parses every reply into a
/// typed result. No I/O, no sleeping, no T: the flow decides, the driver sends. Each command
/// names the key that routes it (every key of a command shares that key's hash slot).
///
/// Commands hold views: of the Keys, tokens, records and numbers the caller keeps alive, and of
/// the store's own strings.

#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/codec/envelope.hpp>
#include <cacheaside/store/keys.hpp>
#include <cacheaside/store/scripts.hpp>
#include <cacheaside/store/server_clock.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cacheaside::store {

/// What a lookup found.
struct Lookup {
  /// The shape of the answer.
  enum class Kind {
    Record,       ///< the key holds bytes (a value, a "not found", a lease, or foreign bytes)
    Empty,        ///< the key held nothing and now holds the caller's lease
    WriteRefused, ///< Redis refuses writes (OOM, MISCONF, READONLY, NOREPLICAS) but may read
    WrongType,    ///< the key holds another type (another program's data): left alone
    Unsupported,  ///< the server has no SET ... NX ... GET (before Redis 7.0)
    Error,        ///< any other error reply, or a reply of a shape no Redis sends here
  };
  /// The shape of the answer.
  Kind kind = Kind::Error;
  /// Record: the stored bytes. Errors: the error text.
  std::string_view bytes;
  /// Record: the key's remaining TTL in ms when the server said it (the scripted lookup, or
  /// PTTL); -1 without expiry or unknown.
  long long pttl = -1;
};

/// What a conditional write (fill, refresh fill, release, renewal) did.
enum class Write {
  Done,   ///< the key still held the caller's token: written (or deleted, or extended)
  Fenced, ///< it did not: invalidated, overwritten or expired meanwhile
  Failed, ///< an error reply
};

/// What an attempt at the refresh lease found.
enum class RefreshLease {
  Won,       ///< the caller holds it: reload and write back
  Busy,      ///< someone else refreshes (or a fail-safe throttle is set)
  Refreshed, ///< the value was refreshed since the caller read it
  Gone,      ///< the value is gone: a lookup's value lease decides who loads it
  Failed,    ///< an error reply
};

/// Builds the cache's commands and parses their replies. Thread-safe: its only mutable state
/// is whether the server lacks SET ... NX ... GET, learned from the first reply that says so,
/// and its estimate of the server's clock.
class Store {
public:
  /// lockTtl: the lifetime of every lease this store takes.
  explicit Store(std::chrono::milliseconds lockTtl) : lockTtl_(std::to_string(lockTtl.count())) {}

  /// Appends the lookup: read the key and, when it holds nothing, store lease there: one
  /// command. withTtl (the caller judges freshness) adds the server's TIME when the store's
  /// clock sample is due (once per ServerClock::kResample), in the same round trip.
  void lookup(const Keys& keys, std::string_view lease, bool withTtl,
              std::vector<Command>& out) const {
    if (legacy_.load(std::memory_order_relaxed)) {
      out.push_back(eval(scripts::lookup(), keys.value, {keys.value}, {lease, lockTtl_}));
      return;
    }
    out.push_back({keys.value, {"SET", keys.value, lease, "NX", "PX", lockTtl_, "GET"}});
    if (withTtl && clock_.claimSample()) {
      out.push_back({keys.value, {"TIME"}}); // routed with the key: that key's server's clock
    }
  }

  /// Appends a look that takes no lease: a plain GET (the cheapest command for a hit), with
  /// the server's TIME as lookup() adds it.
  void peek(const Keys& keys, bool withTtl, std::vector<Command>& out) const {
    out.push_back(get(keys));
    if (withTtl && clock_.claimSample()) {
      out.push_back({keys.value, {"TIME"}});
    }
  }

  /// Parses the replies to peek(), received at now, as parseGet() does.
  Lookup parsePeek(const std::vector<Reply>& replies, ServerClock::Clock::time_point now) const {
    if (replies.empty()) {
      return Lookup{};
    }
    if (replies.size() > 1) {
      clock_.sample(replies[1], now);
    }
    return parseGet(replies.front());
  }

  /// Parses the replies to lookup(), received at now. On a server without SET ... NX ... GET,
  /// switches this store to the scripted lookup and answers Unsupported: the caller looks
  /// again.
  Lookup parseLookup(const std::vector<Reply>& replies, ServerClock::Clock::time_point now) const {
    Lookup out;
    if (replies.empty()) {
      return out;
    }
    if (replies.size() > 1) {
      clock_.sample(replies[1], now);
    }
    const Reply& first = replies.front();
    if (first.type == Reply::Type::Array) { // the scripted lookup: {record, pttl}
      if (first.elements.size() == 2 && first.elements[0].type == Reply::Type::String &&
          first.elements[1].type == Reply::Type::Integer) {
        out.kind = Lookup::Kind::Record;
        out.bytes = first.elements[0].str;
        out.pttl = first.elements[1].integer;
      }
      return out;
    }
    if (first.isNil()) {
      out.kind = Lookup::Kind::Empty;
      return out;
    }
    if (first.isError()) {
      out.bytes = first.str;
      out.kind = classifyError(first.str);
      if (out.kind == Lookup::Kind::Unsupported) {
        legacy_.store(true, std::memory_order_relaxed);
      }
      return out;
    }
    if (first.type != Reply::Type::String) {
      return out;
    }
    out.kind = Lookup::Kind::Record;
    out.bytes = first.str;
    return out;
  }

  /// The server's clock as this store estimates it.
  const ServerClock& clock() const noexcept { return clock_; }

  /// Asks the key's remaining TTL: for a record without an expiry stamp (written by an earlier
  /// version), whose freshness only the server's TTL tells.
  static Command pttl(const Keys& keys) { return {keys.value, {"PTTL", keys.value}}; }

  /// Parses the reply to pttl(): the TTL in ms, or -1 (no expiry, gone, or an error).
  static long long parsePttl(const Reply& reply) {
    return reply.type == Reply::Type::Integer && reply.integer >= 0 ? reply.integer : -1;
  }

  /// A plain read of the key (for get(), and for a Redis that refuses writes).
  Command get(const Keys& keys) const { return {keys.value, {"GET", keys.value}}; }

  /// Parses the reply to get() as a lookup that cannot take a lease: Record, Empty (nothing
  /// there, no lease taken), or Error.
  static Lookup parseGet(const Reply& reply) {
    Lookup out;
    if (reply.isNil()) {
      out.kind = Lookup::Kind::Empty;
    } else if (reply.type == Reply::Type::String) {
      out.kind = Lookup::Kind::Record;
      out.bytes = reply.str;
    } else if (reply.isError()) {
      out.bytes = reply.str;
      out.kind = classifyError(reply.str);
    }
    return out;
  }

  /// Replaces the undecodable record whose SHA-1 is sha1 (or nothing) with lease.
  Command takeover(const Keys& keys, std::string_view sha1, std::string_view lease) const {
    return eval(scripts::takeover(), keys.value, {keys.value}, {sha1, lease, lockTtl_});
  }

  /// Parses the reply to takeover(): Empty when the lease was taken, else what the key holds.
  static Lookup parseTakeover(const Reply& reply) { return parseGet(reply); }

  /// Writes record for ms milliseconds at key if key still holds token; the server stamps the
  /// record's expiry when it has the stamp's field.
  static Command fill(std::string_view key, std::string_view token, std::string_view record,
                      std::string_view ms) {
    if (envelope::hasExpiryStampSlot(record)) {
      return eval(scripts::fill(), key, {key}, {token, record, ms, kStampAt});
    }
    return eval(scripts::fill(), key, {key}, {token, record, ms});
  }

  /// Deletes key if it still holds token.
  static Command release(std::string_view key, std::string_view token) {
    return eval(scripts::release(), key, {key}, {token});
  }

  /// Extends the lease token at leaseKey to the lease time and, when keepAlive names the value
  /// a refresh reloads, that value's TTL to at least as long.
  Command renew(std::string_view leaseKey, std::string_view keepAlive,
                std::string_view token) const {
    if (keepAlive.empty()) {
      return eval(scripts::renew(), leaseKey, {leaseKey}, {token, lockTtl_});
    }
    return eval(scripts::renew(), leaseKey, {leaseKey, keepAlive}, {token, lockTtl_});
  }

  /// Parses the reply to fill(), refreshFill(), release() or renew().
  static Write parseWrite(const Reply& reply) {
    if (reply.type != Reply::Type::Integer) {
      return Write::Failed;
    }
    return reply.integer == 1 ? Write::Done : Write::Fenced;
  }

  /// Takes the refresh lease for a value read with seen left to live: its expiry stamp's 8
  /// bytes when it had one (the value was refreshed if they changed), else its PTTL as a
  /// decimal string (refreshed if it grew).
  Command takeRefresh(const Keys& keys, std::string_view token, std::string_view seen,
                      bool seenIsStamp) const {
    if (seenIsStamp) {
      return eval(scripts::takeRefresh(), keys.value, {keys.value, keys.refreshLease},
                  {token, lockTtl_, seen, kStampAt});
    }
    return eval(scripts::takeRefresh(), keys.value, {keys.value, keys.refreshLease},
                {token, lockTtl_, seen});
  }

  /// Parses the reply to takeRefresh().
  static RefreshLease parseTakeRefresh(const Reply& reply) {
    if (reply.type != Reply::Type::Integer) {
      return RefreshLease::Failed;
    }
    switch (reply.integer) {
    case 1:
      return RefreshLease::Won;
    case 0:
      return RefreshLease::Busy;
    case -1:
      return RefreshLease::Refreshed;
    case -2:
      return RefreshLease::Gone;
    default:
      return RefreshLease::Failed;
    }
  }

  /// Stores the refreshed record for ms milliseconds and drops the refresh lease, if that lease
  /// still holds token.
  static Command refreshFill(const Keys& keys, std::string_view token, std::string_view record,
                             std::string_view ms) {
    if (envelope::hasExpiryStampSlot(record)) {
      return eval(scripts::refreshFill(), keys.value, {keys.value, keys.refreshLease},
                  {token, record, ms, kStampAt});
    }
    return eval(scripts::refreshFill(), keys.value, {keys.value, keys.refreshLease},
                {token, record, ms});
  }

  /// An unconditional write of record for ms milliseconds (stamped as fill() stamps); dropping
  /// the refresh lease first fences a refresh in flight. One command.
  static void set(const Keys& keys, std::string_view record, std::string_view ms,
                  std::vector<Command>& out) {
    if (envelope::hasExpiryStampSlot(record)) {
      out.push_back(eval(scripts::set(), keys.value, {keys.value, keys.refreshLease},
                         {record, ms, kStampAt}));
    } else {
      out.push_back(
          eval(scripts::set(), keys.value, {keys.value, keys.refreshLease}, {record, ms}));
    }
  }

  /// Deletes the value (or lease) and the refresh lease of a key: one command.
  static Command invalidate(const Keys& keys) {
    return {keys.value, {"DEL", keys.value, keys.refreshLease}};
  }

  /// Reads a tag's generation (its key: tagKey()).
  static Command readTag(std::string_view tagKey) { return {tagKey, {"GET", tagKey}}; }

  /// The generation a readTag() reply holds ("" for a tag never invalidated); std::nullopt for
  /// an error or a reply of another shape.
  static std::optional<std::string_view> parseTag(const Reply& reply) {
    if (reply.isNil()) {
      return std::string_view();
    }
    if (reply.type != Reply::Type::String) {
      return std::nullopt;
    }
    return std::string_view(reply.str);
  }

  /// Stands for a generation that could not be read: no tag ever has it.
  static constexpr std::string_view kUnknownGeneration = "?";

  /// Starts a new generation of a tag: every record stamped with an older one reads as
  /// invalidated. One command whatever the number of keys carrying the tag. The generation key
  /// has no TTL: were it to vanish, records stamped before would read as invalidated (a
  /// generation is random, so a later one never equals an earlier one).
  static Command newGeneration(std::string_view tagKey, std::string_view generation) {
    return {tagKey, {"SET", tagKey, generation}};
  }

  /// Where a script was not cached on the server (a restart, a failover, SCRIPT FLUSH): true
  /// when reply says so, and command (an EVALSHA of one of the store's scripts) now runs the
  /// script by its source.
  static bool fallBackToEval(const Reply& reply, Command& command) {
    if (!reply.isError() || reply.str.compare(0, 8, "NOSCRIPT") != 0 || command.argv.size() < 2 ||
        command.argv[0] != "EVALSHA") {
      return false;
    }
    for (const Script* const* s = scripts::all(); *s != nullptr; ++s) {
      if ((*s)->sha1() == command.argv[1]) {
        command.argv[0] = "EVAL";
        command.argv[1] = (*s)->source();
        return true;
      }
    }
    return false;
  }

  /// Whether this store has switched to the scripted lookup (a server before Redis 7.0).
  bool scriptedLookup() const noexcept { return legacy_.load(std::memory_order_relaxed); }

private:
  static Lookup::Kind classifyError(std::string_view error) {
    const auto startsWith = [&](std::string_view prefix) {
      return error.compare(0, prefix.size(), prefix) == 0;
    };
    if (startsWith("WRONGTYPE")) {
      return Lookup::Kind::WrongType;
    }
    if (startsWith("OOM") || startsWith("MISCONF") || startsWith("READONLY") ||
        startsWith("NOREPLICAS")) {
      return Lookup::Kind::WriteRefused;
    }
    if (startsWith("ERR syntax error")) {
      return Lookup::Kind::Unsupported;
    }
    return Lookup::Kind::Error;
  }

  // envelope::kExpiryStampAt, as the scripts take it.
  static constexpr std::string_view kStampAt = "17";
  static_assert(envelope::kExpiryStampAt == 17, "kStampAt spells kExpiryStampAt");

  static Command eval(const Script& script, std::string_view route,
                      std::initializer_list<std::string_view> keys,
                      std::initializer_list<std::string_view> args) {
    static constexpr std::string_view kNumKeys[] = {"0", "1", "2", "3"};
    Command command{route, {}};
    command.argv.reserve(3 + keys.size() + args.size());
    command.argv.push_back("EVALSHA");
    command.argv.push_back(script.sha1());
    command.argv.push_back(kNumKeys[keys.size()]);
    command.argv.insert(command.argv.end(), keys.begin(), keys.end());
    command.argv.insert(command.argv.end(), args.begin(), args.end());
    return command;
  }

  const std::string lockTtl_;
  mutable std::atomic<bool> legacy_{false};
  const ServerClock clock_;
};

} // namespace cacheaside::store
