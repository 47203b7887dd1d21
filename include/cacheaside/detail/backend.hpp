#pragma once
// The cache's side of the client boundary: one funnel for every Redis call (circuit breaker,
// counters, events, the NOSCRIPT fallback), and the event hook. Knows nothing of T.

#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/detail/circuit_breaker.hpp>
#include <cacheaside/detail/lease_renewer.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/flow/step.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/stats.hpp>
#include <cacheaside/store/store.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cacheaside::detail {

class Backend {
public:
  using Clock = std::chrono::steady_clock;
  using Micros = std::chrono::microseconds;

  // The references must outlive the backend.
  Backend(RedisClient& client, const CacheOptions& options, const store::Store& store)
      : client_(client), options_(options), store_(store),
        breaker_(options.breakerThreshold, options.breakerCooldown) {}

  // Sends commands (one round trip; one more for scripts the server had not cached). Throws
  // ConnectionError (counted, reported, fed to the breaker) when the transport fails. Background
  // calls (lease renewals and releases, retried on their own schedule) are neither counted nor
  // held against Redis: a caller's calls are what the counters and the breaker speak of.
  std::vector<Reply> exchange(std::string_view key, const std::vector<Command>& commands,
                              bool background = false) {
    std::vector<Reply> replies = funnel(key, background, [&] {
      return commands.size() == 1 ? std::vector<Reply>{client_.command(commands.front())}
                                  : client_.pipeline(commands);
    });
    std::vector<Command> retry;
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < replies.size() && i < commands.size(); ++i) {
      if (replies[i].isError()) {
        Command command = commands[i];
        if (store::Store::fallBackToEval(replies[i], command)) {
          retry.push_back(std::move(command));
          at.push_back(i);
        }
      }
    }
    if (!retry.empty()) {
      std::vector<Reply> again = funnel(key, background, [&] { return client_.pipeline(retry); });
      for (std::size_t j = 0; j < at.size() && j < again.size(); ++j) {
        replies[at[j]] = std::move(again[j]);
      }
    }
    return replies;
  }

  // The lease renewer's batch: renewals and releases in one round trip; for each job, whether
  // it is finished (a release that succeeded).
  std::vector<bool> sendLeaseJobs(const std::vector<LeaseJob>& jobs) noexcept {
    std::vector<bool> finished(jobs.size(), false);
    try {
      std::vector<Command> commands;
      commands.reserve(jobs.size());
      for (const auto& job : jobs) {
        commands.push_back(job.release ? store::Store::release(job.key, job.token)
                                       : store_.renew(job.key, job.keepAlive, job.token));
      }
      const std::vector<Reply> replies = exchange({}, commands, true);
      for (std::size_t i = 0; i < jobs.size() && i < replies.size(); ++i) {
        finished[i] = jobs[i].release && store::Store::parseWrite(replies[i]) == store::Write::Done;
      }
    } catch (...) {
      // The next tick tries again.
    }
    return finished;
  }

  // Whether a call may use Redis now (false while the breaker is open: counted).
  bool allow() {
    if (breaker_.allow(now())) {
      return true;
    }
    counters_.bump(Counter::breakerBypasses);
    return false;
  }

  bool breakerOpen() const { return breaker_.isOpen(); }

  void count(Counter c) noexcept { counters_.bump(c); }
  Stats stats() const noexcept { return counters_.snapshot(); }

  Clock::time_point now() const { return options_.clock ? options_.clock() : Clock::now(); }
  Micros since(Clock::time_point start) const {
    return std::chrono::duration_cast<Micros>(now() - start);
  }

  // An event timed from started; the clock is read only when someone listens.
  void emitSince(EventType type, std::string_view key, Clock::time_point started) const {
    if (options_.onEvent) {
      emit(type, key, since(started));
    }
  }

  void emit(EventType type, std::string_view key, Micros duration = Micros(0),
            std::string_view detail = {}) const noexcept {
    if (!options_.onEvent) {
      return;
    }
    try {
      options_.onEvent(Event{type, key, duration, detail});
    } catch (...) {
      // A handler that throws must not change what the cache does.
    }
  }

  // Counts and events of one call's flows.
  class CallSink final : public flow::Sink {
  public:
    CallSink(Backend& backend, std::string_view key) : backend_(backend), key_(key) {}
    void count(Counter c) noexcept override { backend_.count(c); }
    void event(EventType type, std::string_view detail) noexcept override {
      backend_.emit(type, key_, Micros(0), detail);
    }

  private:
    Backend& backend_;
    std::string_view key_;
  };

private:
  // Transport failures are counted, reported and fed to the circuit breaker (then rethrown);
  // successes close it. A client out of connections is a local condition: counted apart,
  // never held against Redis.
  template <typename Call>
  auto funnel(std::string_view key, bool background, Call&& call) -> decltype(call()) {
    if (background) {
      return call();
    }
    const auto started = now();
    try {
      auto reply = call();
      if (breaker_.onSuccess() == CircuitBreaker::Change::Closed) {
        emit(EventType::BreakerClose, {});
      }
      return reply;
    } catch (const PoolExhaustedError&) {
      counters_.bump(Counter::poolExhausted);
      throw;
    } catch (const ConnectionError& e) {
      counters_.bump(Counter::redisErrors);
      emit(EventType::RedisError, key, since(started), e.what());
      if (breaker_.onFailure(now()) == CircuitBreaker::Change::Opened) {
        emit(EventType::BreakerOpen, {}, options_.breakerCooldown);
      }
      throw;
    }
  }

  RedisClient& client_;
  const CacheOptions& options_;
  const store::Store& store_;
  CircuitBreaker breaker_;
  AtomicStats counters_;
};

} // namespace cacheaside::detail
