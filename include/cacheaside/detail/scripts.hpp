#pragma once
// The Lua scripts behind the lease. Each touches only KEYS[1], the value key, so it runs in one
// Redis Cluster slot. A lease is a record of kind Lease stored at the value key itself: taking
// it is one SET NX PX GET, which also returns the value when there is one.

#include <cacheaside/client.hpp>

namespace cacheaside::detail {

// Stores ARGV[2] for ARGV[3] ms if the key still holds our lease ARGV[1]; returns 1 or 0.
// An invalidation (DEL), a set() or an expired lease in the meantime makes it return 0.
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

} // namespace cacheaside::detail
