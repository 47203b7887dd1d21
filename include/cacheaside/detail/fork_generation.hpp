#pragma once
/// \file detail/fork_generation.hpp
/// Tells state built in one process that it is now running in a forked child: a pthread_atfork
/// child handler advances a process-wide counter, and the state compares the value it recorded at
/// creation with the current one. The check is one relaxed atomic load, with no system call.

#include <atomic>
#include <cstdint>

#include <pthread.h>

namespace cacheaside::detail {

/// The counter behind currentForkGeneration(); advanced only by the child handler.
inline std::atomic<std::uint64_t>& forkGenerationCounter() noexcept {
  static std::atomic<std::uint64_t> counter{0};
  return counter;
}

/// The pthread_atfork child handler. The child has one thread when it runs and every thread it
/// starts later synchronizes with it, so a relaxed increment is enough.
inline void advanceForkGeneration() noexcept {
  forkGenerationCounter().fetch_add(1, std::memory_order_relaxed);
}

/// How many fork()s separate the calling process from the one that first called this function:
/// 0 there, 1 in its children, 2 in their children. The first call registers the handler, so
/// state that must notice a fork calls it when it is created, before the fork.
inline std::uint64_t currentForkGeneration() noexcept {
  static const bool registered = (pthread_atfork(nullptr, nullptr, &advanceForkGeneration), true);
  (void)registered;
  return forkGenerationCounter().load(std::memory_order_relaxed);
}

} // namespace cacheaside::detail
