#pragma once
// Fast per-thread randomness for lease tokens and TTL jitter. Seeded from std::random_device and
// reseeded in a forked child, so two processes never share a token stream.

#include <cacheaside/detail/fork_generation.hpp>

#include <cstdint>
#include <random>

namespace cacheaside::detail {

/// xoshiro256** (Blackman and Vigna), one instance per thread.
class ThreadRandom {
public:
  /// The calling thread's generator.
  static ThreadRandom& local() {
    thread_local ThreadRandom instance;
    const auto generation = currentForkGeneration();
    if (instance.generation_ != generation) {
      instance.seed();
      instance.generation_ = generation;
    }
    return instance;
  }

  /// 64 uniformly random bits.
  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  /// Uniform in (0, 1].
  double unitOpenClosed() noexcept {
    return (static_cast<double>(next() >> 11) + 1.0) * (1.0 / 9007199254740992.0);
  }

private:
  ThreadRandom() { seed(); }

  void seed() {
    std::random_device device;
    for (auto& word : s_) {
      word = (std::uint64_t{device()} << 32) ^ device();
    }
    if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) {
      s_[0] = 1;
    }
  }

  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }

  std::uint64_t s_[4] = {};
  std::uint64_t generation_ = 0;
};

} // namespace cacheaside::detail
