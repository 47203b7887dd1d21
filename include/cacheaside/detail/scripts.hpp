#pragma once
// The Lua scripts behind the leases. Every key a script touches shares the user key's hash tag,
// so each runs in one Redis Cluster slot. The lease for a missing value is a record of kind
// Lease stored at the value key itself: taking it is one SET NX PX GET, which also returns the
// value when there is one. The lease for refreshing a value that is still served lives beside
// it, at "<value key>:lease".

#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/store/script.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace cacheaside {

/// Runs a script with EVALSHA and, when Redis does not have it cached (a restarted or failed-over
/// server answers NOSCRIPT), once more with EVAL. Returns the script's reply, errors included.
inline Reply evalScript(RedisClient& client, const Script& script,
                        const std::vector<std::string_view>& keys,
                        const std::vector<std::string_view>& args) {
  const std::string numKeys = std::to_string(keys.size());
  Command command{keys.empty() ? std::string_view() : keys.front(), {}};
  Argv& argv = command.argv;
  argv.reserve(3 + keys.size() + args.size());
  argv.push_back("EVALSHA");
  argv.push_back(script.sha1());
  argv.push_back(numKeys);
  argv.insert(argv.end(), keys.begin(), keys.end());
  argv.insert(argv.end(), args.begin(), args.end());
  Reply reply = client.command(command);
  if (reply.isError() && reply.str.compare(0, 8, "NOSCRIPT") == 0) {
    argv[0] = "EVAL";
    argv[1] = script.source();
    reply = client.command(command);
  }
  return reply;
}

namespace detail {

// Stores ARGV[2] for ARGV[3] ms if the key still holds our lease ARGV[1]; returns 1 or 0.
// An invalidation (DEL), a set() or an expired lease in the meantime makes it return 0.
// Also turns a refresh lease into a fail-safe throttle marker.
inline const Script& fillScript() {
  static const Script script(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
)lua");
  return script;
}

// Deletes the key if it still holds our lease ARGV[1]; never someone else's.
inline const Script& releaseScript() {
  static const Script script(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
)lua");
  return script;
}

// Replaces an undecodable record with our lease ARGV[2] (PX ARGV[3]) if the key still holds the
// bytes whose SHA-1 is ARGV[1], or nothing. Returns nil when the lease was taken, otherwise the
// record the key holds now.
inline const Script& takeoverScript() {
  static const Script script(R"lua(
local v = redis.call('GET', KEYS[1])
if (not v) or redis.sha1hex(v) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return false
end
return v
)lua");
  return script;
}

// Stores the refreshed value ARGV[2] at KEYS[1] for ARGV[3] ms and drops the refresh lease
// KEYS[2], if that lease is still ours (ARGV[1]); returns 1 or 0.
inline const Script& refreshFillScript() {
  static const Script script(R"lua(
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
)lua");
  return script;
}

// Extends our lease ARGV[1] at KEYS[1] to ARGV[2] ms; returns 1, or 0 when it is not ours.
inline const Script& renewScript() {
  static const Script script(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
)lua");
  return script;
}

} // namespace detail
} // namespace cacheaside
