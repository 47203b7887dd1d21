#pragma once
/// \file flow/step.hpp
/// What the get-or-load flows (flow/get_flow.hpp, flow/refresh_flow.hpp) ask of their driver,
/// and what the driver tells them back. A flow decides; the driver sends commands, sleeps,
/// decodes values and runs the loader, then resumes the flow with what happened.

#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/codec/envelope.hpp>
#include <cacheaside/events.hpp>
#include <cacheaside/options.hpp>
#include <cacheaside/stats.hpp>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace cacheaside::flow {

/// The clock flows reason with.
using Clock = std::chrono::steady_clock;

/// A lease a flow holds (or may hold) while a load runs: the driver keeps it alive while the
/// loader runs, and releases it later when a Redis failure left it behind.
struct LeaseRef {
  /// The key holding the lease.
  std::string_view key;
  /// A value the lease's holder keeps alive while it reloads it (refreshes only), else empty.
  std::string_view keepAlive;
  /// The lease's token.
  std::string_view token;
};

/// The next thing a flow needs done.
struct Action {
  /// What to do.
  enum class Kind {
    Send,   ///< send commands (one round trip); resume with onReplies or onTransportError
    Sleep,  ///< wait pause; resume with onSlept
    Decode, ///< decode record->payload into a T; resume with onDecoded
    Load,   ///< run the loader; resume with onLoaded
    Done,   ///< finished: read the flow's result
  };
  /// What to do.
  Kind kind = Kind::Done;
  /// Send: the commands (the flow does not read them again: the driver may move them out).
  std::vector<Command>* commands = nullptr;
  /// Sleep: how long.
  std::chrono::milliseconds pause{0};
  /// Decode: the record whose payload to decode.
  const Envelope* record = nullptr;
  /// Load: whether to encode what the loader returns into a record (it will be written back).
  bool encode = false;
  /// Load: a lease to keep alive while the loader runs (key empty: none).
  LeaseRef renew;

  /// An action of kind k, its other fields empty.
  static Action of(Kind k) noexcept {
    Action a;
    a.kind = k;
    return a;
  }
};

/// What a load produced, as the driver reports it to the flow.
struct Loaded {
  /// What the loader did.
  enum class Kind {
    Value,        ///< returned a value; record holds it encoded (when the flow asked)
    Negative,     ///< returned "not found"
    NotCacheable, ///< returned a value that cannot be cached (the encoder failed, or too large)
    Threw,        ///< threw
  };
  /// What the loader did.
  Kind kind = Kind::Value;
  /// Value: the encoded record.
  std::string record;
  /// How long the loader took.
  std::chrono::microseconds took{0};
};

/// Where flows report what they count and what happened.
class Sink {
public:
  virtual ~Sink() = default;
  /// One more of c.
  virtual void count(Counter c) noexcept = 0;
  /// Something worth an event (decode failures, fail-safes); detail as for Event.
  virtual void event(EventType type, std::string_view detail) noexcept = 0;
};

/// The settings a flow runs with: the call's entry options and the cache's own.
struct Settings {
  /// The call's entry options (the cache's defaults with its overrides).
  EntryOptions entry;
  /// CacheOptions::ttlJitter.
  double ttlJitter = 0.1;
  /// CacheOptions::xfetchBeta.
  double xfetchBeta = 1.0;
  /// CacheOptions::pollInitial.
  std::chrono::milliseconds pollInitial{2};
  /// CacheOptions::pollMax.
  std::chrono::milliseconds pollMax{50};
  /// CacheOptions::failSafeThrottle.
  std::chrono::milliseconds failSafeThrottle{1000};
  /// Whether lookups ask for the remaining TTL when XFetch or a stale window would use it
  /// (batches, which refresh nothing, do not).
  bool readTtl = true;
  /// Whether a look starts with a plain GET and takes the lease only after it found nothing
  /// (CacheOptions::lookup Peek); false: the lookup takes it at once.
  bool peekFirst = false;
  /// CallOptions::tags (empty: the call checks and stamps no tags).
  std::vector<std::string> tags;
  /// The Redis key of each tag's generation, in the order of tags.
  std::vector<std::string> tagKeys;
};

} // namespace cacheaside::flow
