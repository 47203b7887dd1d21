#pragma once
// One plain command from a test or a benchmark, routed by its first argument after the name
// (GET k, SET k v, DEL k ...): what the cache's store does properly, tests do by convention.

#include <cacheaside/client/redis_client.hpp>

namespace testsupport {

inline cacheaside::Reply cmd(cacheaside::RedisClient& client, const cacheaside::Argv& argv) {
  const std::string_view key = argv.size() > 1 ? argv[1] : std::string_view();
  return client.command(cacheaside::Command{key, argv});
}

} // namespace testsupport
