// cacheaside against hand-written hiredis and the naive cache-aside pattern, side by side in one
// run, against one redis-server on 127.0.0.1. Prints one markdown table.
//
//   bench --port PORT --data products-20.json [--placement TEXT] [--reps N] [--quick]
//         [--sections hit,miss,near,stampede,scaling,outage,batch,tags,compression,codec]
//         [--command-timeout MS]
//   bench --port PORT --data products-20.json --profile hand|raw-set-get|json|msgpack|cbor|
//         msgpack-cxx
//         [--ops N]      (one hit case alone, for perf or valgrind --tool=callgrind)
//
// Every timing is run --reps times (default 5), the cases of a section interleaved round-robin
// so that machine noise hits them alike; the table shows the median of the runs, and each ratio
// is the median of the per-run ratios (a case against its hand-written baseline of the same run).

#include "bench_support.hpp"
#include "codec.hpp"
#include "stampede.hpp"

#include <cacheaside/cacheaside.hpp>

#include <arpa/inet.h>
#include <cacheaside/client/hiredis_cluster.hpp>
#include <cacheaside/hiredis_client.hpp>
#include <cacheaside/near/cluster_feed.hpp>
#include <cacheaside/near/hiredis_feed.hpp>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <string>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace {

using namespace std::chrono_literals;
using bench::Products;
using bench::TimedResult;

struct Config {
  int port = 0;
  int clusterPort = 0; // --cluster PORT: a seed of a Redis Cluster, for the cluster section
  std::string dataPath;
  std::string placement = "not pinned";
  int reps = 5;
  std::chrono::milliseconds hitDuration = 100ms;  // per slice: 4 slices a run
  std::chrono::milliseconds scaleDuration = 60ms; // per slice
  int missesPerRun = 1000;
  std::string sections =
      "hit,miss,near,stampede,scaling,outage,batch,tags,compression,codec,cluster";
  std::chrono::milliseconds commandTimeout{0}; // 0: HiredisOptions' default
  std::string profile; // --profile CASE: run only that case, for perf or callgrind
  long profileOps = 20000;
};

using JsonCache = cacheaside::CacheAside<Products>;
using MsgPackCache = cacheaside::CacheAside<Products, cacheaside::MsgPackSerializer<Products>>;
using CborCache = cacheaside::CacheAside<Products, cacheaside::CborSerializer<Products>>;
using MsgpackCxxCache = cacheaside::CacheAside<Products, cacheaside::MsgpackSerializer<Products>>;

// The payload's shape, set once from the data file, for consume() to check reads against.
std::size_t gProductCount = 0;
int gFirstId = 0;

// Keeps results observable, and checks them, without costing more than a compare.
void consume(const Products& v) {
  if (v.size() != gProductCount || v.front().id != gFirstId) {
    throw std::runtime_error("bench: wrong value read");
  }
}

// A loader for keys that must be warm: reaching it is a bug in the benchmark.
Products mustNotLoad() {
  throw std::runtime_error("bench: a warm key missed");
}

cacheaside::HiredisOptions poolOptions(const Config& cfg, std::size_t poolSize) {
  cacheaside::HiredisOptions o;
  o.host = "127.0.0.1";
  o.port = cfg.port;
  o.poolSize = poolSize;
  if (cfg.commandTimeout.count() > 0) {
    o.commandTimeout = cfg.commandTimeout;
  }
  return o;
}

bool wanted(const Config& cfg, const std::string& section) {
  return ("," + cfg.sections + ",").find("," + section + ",") != std::string::npos;
}

cacheaside::CacheOptions cacheOptions(const std::string& ns) {
  cacheaside::CacheOptions o;
  o.keyNamespace = ns;
  o.ttl = std::chrono::hours(1);
  return o;
}

// The command timeout of the hand-written connections: the pooled client's (50 ms unless
// --command-timeout says otherwise), so that both give up alike on a loaded machine.
std::chrono::milliseconds handTimeout(const Config& cfg) {
  return cfg.commandTimeout.count() > 0 ? cfg.commandTimeout : 50ms;
}

// The hand-written hit: one GET on the thread's own connection, then json::parse.
auto handHit(int port, std::chrono::milliseconds timeout, std::string key) {
  auto conn = std::make_shared<bench::RawConn>(port, timeout);
  return [conn, key = std::move(key)] {
    const char* argv[2] = {"GET", key.data()};
    const std::size_t lens[2] = {3, key.size()};
    bench::ReplyPtr r(static_cast<redisReply*>(redisCommandArgv(conn->get(), 2, argv, lens)));
    if (!r || r->type != REDIS_REPLY_STRING) {
      throw std::runtime_error("bench: hand-written GET failed");
    }
    consume(nlohmann::json::parse(r->str, r->str + r->len).get<Products>());
  };
}

// The library's hit written by hand: SET <record key> <lease> NX PX 5000 GET, then json::parse
// of the payload after the record's header and expiry stamp. Tells the cost of the command
// apart from the cost of the library.
auto rawSetGetHit(int port, std::chrono::milliseconds timeout, std::string recordKey) {
  auto conn = std::make_shared<bench::RawConn>(port, timeout);
  return [conn, key = std::move(recordKey)] {
    const char* setArgv[7] = {"SET",  key.data(), "0123456789abcdef0123456789ab", "NX", "PX",
                              "5000", "GET"};
    const std::size_t setLens[7] = {3, key.size(), 28, 2, 2, 4, 3};
    bench::ReplyPtr r(static_cast<redisReply*>(redisCommandArgv(conn->get(), 7, setArgv, setLens)));
    constexpr std::size_t kPrefix =
        cacheaside::envelope::kExpiryStampAt + cacheaside::envelope::kExpiryStampSize;
    if (!r || r->type != REDIS_REPLY_STRING || r->len < kPrefix) {
      throw std::runtime_error("bench: hand-written SET NX PX GET failed");
    }
    consume(nlohmann::json::parse(r->str + kPrefix, r->str + r->len).get<Products>());
  };
}

template <typename Cache> auto cacheHit(Cache& cache, std::string key) {
  return [&cache, key = std::move(key)] { consume(cache.getOrLoad(key, mustNotLoad)); };
}

// One measured case of a section: how to run it once, and what its runs gave.
struct Case {
  std::string label;
  int threads = 1;
  std::function<TimedResult()> run;
  int baseline = -1; // index of the hand-written case it is compared with, or -1
  std::vector<TimedResult> results;
};

// Each of the reps runs of a case is made of kSlices slices, and the slices of all cases take
// turns (ABC ABC ABC ABC), so that a compile starting on the machine slows every case alike.
constexpr int kSlices = 4;

void runInterleaved(std::vector<Case>& cases, int reps) {
  for (int rep = 0; rep < reps; ++rep) {
    std::vector<TimedResult> runs(cases.size());
    for (int slice = 0; slice < kSlices; ++slice) {
      for (std::size_t c = 0; c < cases.size(); ++c) {
        runs[c].add(cases[c].run());
      }
    }
    for (std::size_t c = 0; c < cases.size(); ++c) {
      runs[c].finish();
      cases[c].results.push_back(std::move(runs[c]));
    }
  }
}

template <typename F> double medianOf(const std::vector<TimedResult>& rs, F field) {
  std::vector<double> v;
  for (const auto& r : rs) {
    v.push_back(field(r));
  }
  return bench::median(v);
}

// Median over runs of (case time per op / baseline time per op), paired run by run.
double timeRatio(const Case& c, const Case& base) {
  std::vector<double> v;
  for (std::size_t i = 0; i < c.results.size(); ++i) {
    v.push_back(base.results[i].opsPerSec / c.results[i].opsPerSec);
  }
  return bench::median(v);
}

double p50Ratio(const Case& c, const Case& base) {
  std::vector<double> v;
  for (std::size_t i = 0; i < c.results.size(); ++i) {
    v.push_back(c.results[i].p50us / base.results[i].p50us);
  }
  return bench::median(v);
}

std::string latencyCell(const Case& c) {
  return bench::format("p50 %.1f µs, p99 %.1f µs, %s ops/s",
                       medianOf(c.results, [](const TimedResult& r) { return r.p50us; }),
                       medianOf(c.results, [](const TimedResult& r) { return r.p99us; }),
                       bench::opsText(medianOf(c.results, [](const TimedResult& r) {
                         return r.opsPerSec;
                       })).c_str());
}

std::string verdict(bool met) {
  return met ? "met" : "MISSED";
}

// --profile: one warm-key case on one thread, N calls, nothing else (for perf and callgrind).
void profileOne(const Config& cfg, const Products& products, const std::string& payload) {
  cacheaside::HiredisClient client(poolOptions(cfg, 8));
  JsonCache json(client, cacheOptions("bench-json"));
  MsgPackCache msgpack(client, cacheOptions("bench-msgpack"));
  CborCache cbor(client, cacheOptions("bench-cbor"));
  MsgpackCxxCache msgpackCxx(client, cacheOptions("bench-msgpack-cxx"));
  bench::RawConn setup(cfg.port, 1000ms);
  const std::string key = "profile";
  const std::string handKey = "bench-hand:{profile}";
  setup.command({"SET", handKey, payload, "PX", "3600000"});
  json.set(key, products, std::chrono::hours(1));
  msgpack.set(key, products, std::chrono::hours(1));
  cbor.set(key, products, std::chrono::hours(1));
  msgpackCxx.set(key, products, std::chrono::hours(1));
  std::function<void()> op;
  if (cfg.profile == "hand") {
    op = handHit(cfg.port, handTimeout(cfg), handKey);
  } else if (cfg.profile == "raw-set-get") {
    op = rawSetGetHit(cfg.port, handTimeout(cfg), "bench-json:{profile}");
  } else if (cfg.profile == "json") {
    op = cacheHit(json, key);
  } else if (cfg.profile == "msgpack") {
    op = cacheHit(msgpack, key);
  } else if (cfg.profile == "cbor") {
    op = cacheHit(cbor, key);
  } else if (cfg.profile == "msgpack-cxx") {
    op = cacheHit(msgpackCxx, key);
  } else {
    throw std::runtime_error("bench: unknown --profile case " + cfg.profile);
  }
  const auto t0 = bench::Clock::now();
  for (long i = 0; i < cfg.profileOps; ++i) {
    op();
  }
  const double s = std::chrono::duration<double>(bench::Clock::now() - t0).count();
  std::printf("%s: %ld calls, %.2f µs/call\n", cfg.profile.c_str(), cfg.profileOps,
              s * 1e6 / static_cast<double>(cfg.profileOps));
}

// 1. Hit path.
void hitPath(const Config& cfg, cacheaside::HiredisClient& client, const Products& products,
             const std::string& payload, bench::Table& table) {
  JsonCache json(client, cacheOptions("bench-json"));
  MsgPackCache msgpack(client, cacheOptions("bench-msgpack"));
  CborCache cbor(client, cacheOptions("bench-cbor"));
  MsgpackCxxCache msgpackCxx(client, cacheOptions("bench-msgpack-cxx"));
  cacheaside::CacheOptions leasing = cacheOptions("bench-json");
  leasing.lookup = cacheaside::LookupMode::Lease; // SET NX PX GET on every look
  JsonCache jsonLease(client, leasing);
  bench::RawConn setup(cfg.port, 1000ms);
  for (int t = 0; t < 2; ++t) {
    const std::string key = "hit:" + std::to_string(t);
    setup.command({"SET", "bench-hand:{" + key + "}", payload, "PX", "3600000"});
    json.set(key, products, std::chrono::hours(1));
    msgpack.set(key, products, std::chrono::hours(1));
    cbor.set(key, products, std::chrono::hours(1));
    msgpackCxx.set(key, products, std::chrono::hours(1));
  }
  const auto ownKey = [](int t) { return "hit:" + std::to_string(t); };
  const int port = cfg.port;
  const auto timeout = handTimeout(cfg);
  const auto d = cfg.hitDuration;
  std::vector<Case> cases;
  const auto add = [&](std::string label, int threads, int baseline, auto makeOp) {
    cases.push_back(Case{std::move(label),
                         threads,
                         [threads, d, makeOp] { return bench::timedRun(threads, d, true, makeOp); },
                         baseline,
                         {}});
  };
  for (int threads : {1, 2}) {
    const int base = static_cast<int>(cases.size());
    add("hand-written", threads, -1, [port, timeout, ownKey](int t) {
      return handHit(port, timeout, "bench-hand:{" + ownKey(t) + "}");
    });
    add("JSON", threads, base, [&json, ownKey](int t) { return cacheHit(json, ownKey(t)); });
    add("JSON, LookupMode::Lease", threads, base,
        [&jsonLease, ownKey](int t) { return cacheHit(jsonLease, ownKey(t)); });
    if (threads == 1) {
      add("diagnosis: LookupMode::Lease's SET NX PX GET by hand", threads, base,
          [port, timeout, ownKey](int t) {
            return rawSetGetHit(port, timeout, "bench-json:{" + ownKey(t) + "}");
          });
    }
    if (threads == 2) {
      // Concurrent hits on one key each read Redis: a read in flight is never shared.
      add("JSON, same key", threads, base, [&json](int) { return cacheHit(json, "hit:0"); });
    }
    add("MessagePack", threads, base,
        [&msgpack, ownKey](int t) { return cacheHit(msgpack, ownKey(t)); });
    add("CBOR", threads, base, [&cbor, ownKey](int t) { return cacheHit(cbor, ownKey(t)); });
    add("msgpack-cxx (codec/msgpack.hpp)", threads, base,
        [&msgpackCxx, ownKey](int t) { return cacheHit(msgpackCxx, ownKey(t)); });
  }
  runInterleaved(cases, cfg.reps);

  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    if (c.baseline < 0) {
      continue;
    }
    const Case& base = cases[static_cast<std::size_t>(c.baseline)];
    const int threads = c.threads;
    const double tr = timeRatio(c, base);
    const double pr = p50Ratio(c, base);
    const bool isJson = c.label.rfind("JSON", 0) == 0;
    const bool sameKey = c.label.find("same key") != std::string::npos;
    const bool msgpackCxxCase = c.label.rfind("msgpack-cxx", 0) == 0;
    std::string target = "—";
    std::string met = "—";
    if (c.label.rfind("diagnosis", 0) == 0) {
      target = "(no library)";
    } else if (c.label.find("Lease") != std::string::npos) {
      target = "(the option's cost)";
    } else if (msgpackCxxCase && threads == 1) {
      target = "≤ 0.40";
      met = verdict(tr <= 0.40 && pr <= 0.40);
    } else if (isJson) {
      target = "≤ 1.03";
      met = verdict(tr <= 1.03 && pr <= 1.03);
    } else {
      target = "< 1.00";
      met = verdict(tr < 1.0 && pr < 1.0);
    }
    const std::string keys = sameKey ? "" : ", own keys";
    table.add({"1 hit", c.label + ", " + std::to_string(threads) + " thr" + keys, latencyCell(c),
               latencyCell(base), bench::format("time/op %.3f, p50 %.3f", tr, pr), target, met});
  }
  const auto s = json.stats();
  if (s.loads != 0 || msgpack.stats().loads != 0 || cbor.stats().loads != 0 ||
      jsonLease.stats().loads != 0 || msgpackCxx.stats().loads != 0) {
    throw std::runtime_error("bench: the hit path loaded");
  }
}

// 2. Miss path: commands per miss as the server counts them, and time per miss.
struct MissRun {
  double usPerMiss = 0;
  double topLevel = 0;   // top-level commands per miss, from the server counters
  double processed = 0;  // total_commands_processed per miss, script-internal calls included
  double roundTrips = 0; // counted by the client
};

void missPath(const Config& cfg, cacheaside::HiredisClient& client, const Products& products,
              const std::string& runId, bench::Table& table) {
  bench::CountingClient counting(client);
  cacheaside::CacheOptions co = cacheOptions("bench-miss-" + runId);
  co.ttl = 30s;
  JsonCache cache(counting, co);
  bench::RawConn control(cfg.port, 1000ms);
  bench::RawConn hand(cfg.port, 50ms);
  const int n = cfg.missesPerRun;
  const auto loader = [&products] { return products; };

  // Warm: the fill script is loaded (EVALSHA, not EVAL) before anything is measured.
  consume(cache.getOrLoad("warm", loader));

  std::vector<MissRun> ca;
  std::vector<MissRun> locked;
  std::vector<MissRun> naive;
  std::uint64_t fenced = 0;
  for (int rep = 0; rep < cfg.reps; ++rep) {
    const std::string tag = runId + ":" + std::to_string(rep) + ":";
    // cacheaside: one SET NX PX GET (nil: lease taken), the load, one EVALSHA fill.
    {
      const auto before = bench::readServerCounters(control);
      const auto trips = counting.roundTrips();
      const auto t0 = bench::Clock::now();
      for (int i = 0; i < n; ++i) {
        consume(cache.getOrLoad("m:" + tag + std::to_string(i), loader));
      }
      const auto t1 = bench::Clock::now();
      const auto after = bench::readServerCounters(control);
      MissRun r;
      r.usPerMiss = std::chrono::duration<double, std::micro>(t1 - t0).count() / n;
      const long long info = after.of("info") - before.of("info");
      const long long scripts = after.of("evalsha") - before.of("evalsha");
      // The fill script runs GET, SET, TIME and SETRANGE (the expiry stamp) inside: 4
      // script-internal calls per EVALSHA. The lookup is SET NX PX GET: one command.
      const long long processed = after.total - before.total - info;
      r.processed = static_cast<double>(processed) / n;
      r.topLevel = static_cast<double>(processed - 4 * scripts) / n;
      r.roundTrips = static_cast<double>(counting.roundTrips() - trips) / n;
      ca.push_back(r);
    }
    // Hand-written with a lock: GET, SET lock NX PX, load, SET value PX, DEL lock.
    for (bool withLock : {true, false}) {
      const auto before = bench::readServerCounters(control);
      const auto t0 = bench::Clock::now();
      for (int i = 0; i < n; ++i) {
        const std::string key =
            std::string(withLock ? "bench-lock:" : "bench-naive:") + tag + std::to_string(i);
        const std::string lock = key + ":lock";
        const bench::ReplyPtr got = hand.command({"GET", key});
        if (got->type != REDIS_REPLY_NIL) {
          throw std::runtime_error("bench: a miss key was present");
        }
        if (withLock) {
          const bench::ReplyPtr taken = hand.command({"SET", lock, tag, "NX", "PX", "5000"});
          if (taken->type != REDIS_REPLY_STATUS) {
            throw std::runtime_error("bench: the hand-written lock was not free");
          }
        }
        const Products value = loader();
        hand.command({"SET", key, nlohmann::json(value).dump(), "PX", "30000"});
        if (withLock) {
          hand.command({"DEL", lock});
        }
        consume(value);
      }
      const auto t1 = bench::Clock::now();
      const auto after = bench::readServerCounters(control);
      MissRun r;
      r.usPerMiss = std::chrono::duration<double, std::micro>(t1 - t0).count() / n;
      const long long processed =
          after.total - before.total - (after.of("info") - before.of("info"));
      r.processed = static_cast<double>(processed) / n;
      r.topLevel = r.processed; // no scripts
      r.roundTrips = r.processed;
      (withLock ? locked : naive).push_back(r);
    }
  }
  fenced = cache.stats().fencedWrites;
  if (fenced != 0 || cache.stats().redisErrors != 0) {
    throw std::runtime_error("bench: a miss-path fill was fenced or failed");
  }
  const auto med = [](const std::vector<MissRun>& runs, double MissRun::*field) {
    std::vector<double> v;
    for (const auto& r : runs) {
      v.push_back(r.*field);
    }
    return bench::median(v);
  };
  const auto cell = [&](const std::vector<MissRun>& runs) {
    return bench::format("%.2f round trips (server: %.2f commands, %.2f incl. in-script), "
                         "%.1f µs/miss",
                         med(runs, &MissRun::roundTrips), med(runs, &MissRun::topLevel),
                         med(runs, &MissRun::processed), med(runs, &MissRun::usPerMiss));
  };
  std::vector<double> ratios;
  for (std::size_t i = 0; i < ca.size(); ++i) {
    ratios.push_back(ca[i].usPerMiss / locked[i].usPerMiss);
  }
  const double trips = med(ca, &MissRun::roundTrips);
  table.add({"2 miss", "JSON, 1 thr, fresh key, instant loader; vs GET, SET NX PX, SET PX, DEL",
             cell(ca), cell(locked), bench::format("time/miss %.3f", bench::median(ratios)),
             "2 round trips", verdict(trips <= 2.0)});
  std::vector<double> naiveRatios;
  for (std::size_t i = 0; i < ca.size(); ++i) {
    naiveRatios.push_back(ca[i].usPerMiss / naive[i].usPerMiss);
  }
  table.add({"2 miss", "same, vs naive GET, SET PX (no lock: stampedes, see 3)", cell(ca),
             cell(naive), bench::format("time/miss %.3f", bench::median(naiveRatios)), "—", "—"});
}

// 3. Stampede.
void stampedes(const Config& cfg, const Products& products, const std::string& payload,
               const std::string& runId, bench::Table& table) {
  struct Shape {
    int processes;
    int threads;
  };
  struct Mode {
    bench::StampedeMode mode;
    const char* label;
  };
  const Mode modes[] = {
      {bench::StampedeMode::CacheShared, "cacheaside, one instance per process"},
      {bench::StampedeMode::CachePerThread, "cacheaside, one instance per thread (lease only)"},
      {bench::StampedeMode::CacheSharedNear, "cacheaside, one instance per process, near cache"},
      {bench::StampedeMode::Naive, "naive GET / SET PX"}};
  for (const Shape shape : {Shape{4, 50}, Shape{2, 8}}) {
    std::vector<std::vector<bench::StampedeResult>> results(std::size(modes));
    for (int rep = 0; rep < cfg.reps; ++rep) {
      for (std::size_t m = 0; m < std::size(modes); ++m) {
        const std::string key = "st:" + runId + ":" + std::to_string(shape.processes) + "x" +
                                std::to_string(shape.threads) + ":" + std::to_string(m) + ":" +
                                std::to_string(rep);
        results[m].push_back(bench::stampede(modes[m].mode, shape.processes, shape.threads,
                                             poolOptions(cfg, 8), products, payload, key,
                                             key + ":loads"));
      }
    }
    std::vector<std::string> cells;
    std::vector<double> loadMedians;
    for (const auto& rs : results) {
      std::vector<double> loads;
      std::vector<double> wall;
      long long failures = 0;
      long long errors = 0;
      long long timeouts = 0;
      long long clientLoads = 0;
      long long serverLoads = 0;
      for (const auto& r : rs) {
        loads.push_back(static_cast<double>(r.loads));
        wall.push_back(r.wallMs);
        failures += r.failures;
        errors += r.redisErrors;
        timeouts += r.waitTimeouts;
        clientLoads += r.clientLoads;
        serverLoads += r.loads;
      }
      const auto [lo, hi] = std::minmax_element(loads.begin(), loads.end());
      std::string cell = bench::format("loads %.0f (runs %.0f–%.0f), %.0f ms", bench::median(loads),
                                       *lo, *hi, bench::median(wall));
      if (failures != 0 || errors != 0 || timeouts != 0 || clientLoads != serverLoads) {
        cell += bench::format(" [in all runs: %lld Redis errors, %lld wait timeouts, %lld failed "
                              "calls; loads counted by the loaders %lld, by Redis %lld]",
                              errors, timeouts, failures, clientLoads, serverLoads);
      }
      cells.push_back(cell);
      loadMedians.push_back(bench::median(loads));
    }
    const std::string shapeText =
        std::to_string(shape.processes) + " proc × " + std::to_string(shape.threads) + " thr";
    for (std::size_t m = 0; m + 1 < std::size(modes); ++m) {
      const double worst = [&] {
        double w = 0;
        for (const auto& r : results[m]) {
          w = std::max(w, static_cast<double>(r.loads));
        }
        return w;
      }();
      table.add({"3 stampede", shapeText + ", cold key, 100 ms loader; " + modes[m].label, cells[m],
                 cells.back(), bench::format("loads %.3f", loadMedians[m] / loadMedians.back()),
                 "1 load", verdict(worst <= 1.0)});
    }
    // From the loader's return (the fill follows it) to each caller's answer, all runs pooled:
    // waiters polling (pollMax 50 ms) against waiters woken by the fill's invalidation.
    const auto afterFill = [&](std::size_t m) {
      std::vector<double> v;
      for (const auto& r : results[m]) {
        v.insert(v.end(), r.afterFillMs.begin(), r.afterFillMs.end());
      }
      std::sort(v.begin(), v.end());
      const auto q = [&](double p) {
        return v.empty() ? 0.0 : v[std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()))];
      };
      return std::pair<double, double>(q(0.50), q(0.99));
    };
    const auto [pollP50, pollP99] = afterFill(0);
    const auto [nearP50, nearP99] = afterFill(2);
    table.add({"3 stampede",
               shapeText + ", delay from fill to each caller's answer; near cache (push)",
               bench::format("p50 %.2f ms, p99 %.2f ms", nearP50, nearP99),
               bench::format("polling: p50 %.2f ms, p99 %.2f ms", pollP50, pollP99),
               bench::format("p99 %.3f", pollP99 > 0 ? nearP99 / pollP99 : 0.0), "p99 ≤ 2 ms",
               verdict(nearP99 <= 2.0)});
  }
}

// 4. Throughput scaling: distinct key per thread.
void scaling(const Config& cfg, const Products& products, const std::string& payload,
             bench::Table& table) {
  cacheaside::HiredisClient pooled(poolOptions(cfg, 8));
  JsonCache json(pooled, cacheOptions("bench-scale"));
  bench::RawConn setup(cfg.port, 1000ms);
  const auto key = [](int t) { return "scale:" + std::to_string(t); };
  for (int t = 0; t < 8; ++t) {
    setup.command({"SET", "bench-hand:{" + key(t) + "}", payload, "PX", "3600000"});
    json.set(key(t), products, std::chrono::hours(1));
  }
  const int port = cfg.port;
  const auto timeout = handTimeout(cfg);
  const auto d = cfg.scaleDuration;
  std::vector<Case> cases;
  for (int threads : {1, 2, 4, 8}) {
    const int base = static_cast<int>(cases.size());
    cases.push_back(Case{"hand",
                         threads,
                         [=] {
                           return bench::timedRun(threads, d, false, [port, timeout, key](int t) {
                             return handHit(port, timeout, "bench-hand:{" + key(t) + "}");
                           });
                         },
                         -1,
                         {}});
    cases.push_back(Case{std::to_string(threads),
                         threads,
                         [=, &json] {
                           return bench::timedRun(threads, d, false, [&json, key](int t) {
                             return cacheHit(json, key(t));
                           });
                         },
                         base,
                         {}});
  }
  runInterleaved(cases, cfg.reps);
  const auto ops = [](const Case& c) {
    return medianOf(c.results, [](const TimedResult& r) { return r.opsPerSec; });
  };
  const double ca1 = ops(cases[1]);
  const double hand1 = ops(cases[0]);
  for (std::size_t i = 1; i < cases.size(); i += 2) {
    const Case& c = cases[i];
    const Case& base = cases[i - 1];
    const double r = timeRatio(c, base);
    table.add(
        {"4 scaling", "JSON hit, " + c.label + " thr, own key each; pool of 8 vs a connection each",
         bench::format("%s ops/s (×%.2f of 1 thr)", bench::opsText(ops(c)).c_str(), ops(c) / ca1),
         bench::format("%s ops/s (×%.2f of 1 thr)", bench::opsText(ops(base)).c_str(),
                       ops(base) / hand1),
         bench::format("time/op %.3f", r), "≤ 1.05", verdict(r <= 1.05)});
  }
}

// 6. Compression through the cache: stored bytes (STRLEN of the record) and the 1-thread hit
// time of 2 KB, 64 KB and 1 MB JSON values, without a compressor and with LZ4 and zstd (level
// 3, compressAbove 1 KiB), next to the hand-written GET + json::parse of the same value
// uncompressed. Prints its own table.
void compression(const Config& cfg, const Products& products) {
  cacheaside::HiredisClient client(poolOptions(cfg, 2));
  bench::RawConn conn(cfg.port, std::chrono::milliseconds(1000));
  struct Variant {
    const char* label;
    std::shared_ptr<const cacheaside::Compressor> compressor;
  };
  const Variant variants[] = {{"none", nullptr},
                              {"LZ4", std::make_shared<cacheaside::Lz4Compressor>()},
                              {"zstd level 3", std::make_shared<cacheaside::ZstdCompressor>()}};
  bench::Table out({"value (JSON)", "compressor", "stored bytes", "hit (1 thr)",
                    "hand-written GET + parse, uncompressed", "hit ÷ hand-written"});
  for (const std::size_t size :
       {std::size_t{2} << 10, std::size_t{64} << 10, std::size_t{1} << 20}) {
    const Products value = bench::repeatedProducts(products, size);
    const std::string json = nlohmann::json(value).dump();
    const std::string handKey = "bench-hand:{z" + std::to_string(size) + "}";
    conn.command({"SET", handKey, json, "PX", "3600000"});
    std::vector<std::unique_ptr<JsonCache>> caches;
    std::vector<long long> stored;
    for (const Variant& v : variants) {
      cacheaside::CacheOptions o = cacheOptions(std::string("bench-z-") + v.label);
      o.maxValueBytes = std::size_t{4} << 20;
      o.compressor = v.compressor;
      caches.push_back(std::make_unique<JsonCache>(client, o));
      const std::string key = "z" + std::to_string(size);
      if (!caches.back()->set(key, value, std::chrono::hours(1))) {
        throw std::runtime_error("bench: a compression-section value was not stored");
      }
      stored.push_back(
          conn.command({"STRLEN", cacheaside::store::valueKey(o.keyNamespace, key)})->integer);
    }
    const auto check = [n = value.size()](const Products& got) {
      if (got.size() != n) {
        throw std::runtime_error("bench: wrong value read");
      }
    };
    std::vector<std::function<void()>> cases;
    cases.push_back([&conn, &handKey, check] {
      const bench::ReplyPtr r = conn.command({"GET", handKey});
      check(nlohmann::json::parse(r->str, r->str + r->len).get<Products>());
    });
    for (auto& cache : caches) {
      cases.push_back([&cache, size, check] {
        check(cache->getOrLoad("z" + std::to_string(size), mustNotLoad));
      });
    }
    const std::vector<double> us =
        bench::medianMicros(cases, cfg.reps, std::chrono::milliseconds(size > 100000 ? 300 : 60));
    for (std::size_t i = 0; i < caches.size(); ++i) {
      out.add({bench::format("%zu B", json.size()), variants[i].label,
               bench::format("%lld B (%.2f of none)", stored[i],
                             static_cast<double>(stored[i]) / static_cast<double>(stored[0])),
               bench::format("%.1f µs", us[i + 1]), bench::format("%.1f µs", us[0]),
               bench::format("%.3f", us[i + 1] / us[0])});
      if (caches[i]->stats().loads != 0) {
        throw std::runtime_error("bench: the compression section loaded");
      }
    }
  }
  std::printf("\ncompression through the cache: the product list repeated to the size; mean "
              "µs per call over slices of at least 60 ms (300 ms at 1 MB), median of %d "
              "interleaved runs; placement: %s\n\n",
              cfg.reps, cfg.placement.c_str());
  out.print(stdout);
}

// The server's CPU time so far (INFO cpu: used_cpu_sys + used_cpu_user), in µs.
double serverCpuMicros(cacheaside::RedisClient& client) {
  const cacheaside::Reply info = client.command({{}, {"INFO", "cpu"}});
  double seconds = 0;
  for (const char* field : {"used_cpu_sys:", "used_cpu_user:"}) {
    const auto at = info.str.find(field);
    if (at == std::string::npos) {
      throw std::runtime_error("bench: INFO cpu lacks " + std::string(field));
    }
    seconds += std::strtod(info.str.c_str() + at + std::strlen(field), nullptr);
  }
  return seconds * 1e6;
}

// This thread's CPU time so far, in µs.
double threadCpuMicros() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_nsec) / 1e3;
}

// Microseconds from t0 until cache has counted more invalidations than before (at most 1 s).
// Yields: on one CPU, a spin would keep the feed's thread from running.
template <typename Cache, typename Count>
double microsUntilInvalidated(const Cache& cache, Count before, bench::Clock::time_point t0) {
  const auto limit = t0 + 1s;
  while (cache.nearStats().invalidations == before && bench::Clock::now() < limit) {
    std::this_thread::yield();
  }
  return std::chrono::duration<double, std::micro>(bench::Clock::now() - t0).count();
}

// How long invalidations took to be seen: the table cell, and the p99 for the verdict.
struct Seen {
  std::string cell;
  double p99 = 0;
};
Seen describeSeen(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  const auto q = [&](double p) {
    return us[std::min(us.size() - 1, static_cast<std::size_t>(p * us.size()))];
  };
  return {bench::format("p50 %.0f µs, p90 %.0f µs, p99 %.0f µs, max %.0f µs (n=%zu)", q(0.5),
                        q(0.9), q(0.99), us.back(), us.size()),
          q(0.99)};
}

// A loopback port that nothing listens on (the kernel picked it a moment ago).
// 100 keys of which 10 miss (fresh keys each call, the other 90 warm): one getOrLoadMany
// against 100 sequential getOrLoad calls, interleaved rep by rep. Values are one product each
// (what a batch usually fetches: rows by id); the loader answers at once, so that the figures
// are Redis round trips and the library's own work.
void batchPath(const Config& cfg, cacheaside::HiredisClient& client, const Products& products,
               const std::string& runId, bench::Table& table) {
  using One = cacheaside::CacheAside<bench::Product>;
  bench::CountingClient counting(client);
  One cache(counting, cacheOptions("bench-batch-" + runId));
  const bench::Product row = products.front();
  std::vector<std::string> warm;
  for (int i = 0; i < 90; ++i) {
    warm.push_back("w" + std::to_string(i));
  }
  std::size_t loaderCalls = 0;
  const auto batchLoader = [&](const std::vector<std::string>& keys) {
    ++loaderCalls;
    std::unordered_map<std::string, bench::Product> out;
    for (const auto& k : keys) {
      out.emplace(k, row);
    }
    return out;
  };
  cache.getOrLoadMany(warm, batchLoader);
  const int calls = cfg.missesPerRun / 10; // calls per case and run
  std::vector<double> batchUs, seqUs, ratios, batchTrips, handUs, handRatios;
  // Where the time goes: this thread's CPU and the server's, per batch, for both.
  std::vector<double> batchCpu, batchServer, handCpu, handServer;
  // The floor: the batch's commands written by hand on the same client (one pipeline of
  // SET NX PX GET, JSON decodes, one pipeline of SET PX for the misses), no lease checks.
  const std::string lease = cacheaside::codec::leaseRecord();
  const std::string rowJson = nlohmann::json(row).dump();
  const auto byHand = [&](const std::vector<std::string>& keys) {
    std::vector<cacheaside::Command> lookups;
    lookups.reserve(keys.size());
    for (const auto& k : keys) {
      lookups.push_back({k, {"SET", k, lease, "NX", "PX", "5000", "GET"}});
    }
    const std::vector<cacheaside::Reply> replies = client.pipeline(lookups);
    std::vector<cacheaside::Command> fills;
    std::size_t found = 0;
    for (std::size_t i = 0; i < replies.size(); ++i) {
      if (replies[i].type == cacheaside::Reply::Type::String) {
        found += nlohmann::json::parse(replies[i].str).get<bench::Product>().id == row.id;
      } else {
        fills.push_back({keys[i], {"SET", keys[i], rowJson, "PX", "3600000"}});
      }
    }
    client.pipeline(fills);
    if (found + fills.size() != keys.size()) {
      throw std::runtime_error("bench: a hand-written batch read a wrong row");
    }
  };
  std::vector<std::string> handWarm;
  for (const auto& k : warm) {
    handWarm.push_back("bench-batch-hand-" + runId + ":" + k);
  }
  byHand(handWarm);
  std::size_t batchLoads = 0;
  long serial = 0;
  const auto keysFor = [&] {
    std::vector<std::string> keys = warm;
    const std::string fresh = "m" + std::to_string(serial++) + ":";
    for (int i = 0; i < 10; ++i) {
      keys.push_back(fresh + std::to_string(i));
    }
    return keys;
  };
  for (int rep = 0; rep < cfg.reps; ++rep) {
    const auto trips0 = counting.roundTrips();
    const auto loads0 = loaderCalls;
    double server0 = serverCpuMicros(client);
    double cpu0 = threadCpuMicros();
    auto t0 = bench::Clock::now();
    for (int c = 0; c < calls; ++c) {
      const auto got = cache.getOrLoadMany(keysFor(), batchLoader);
      if (got.size() != 100 || !got.back()) {
        throw std::runtime_error("bench: a batch came back short");
      }
    }
    auto t1 = bench::Clock::now();
    batchCpu.push_back((threadCpuMicros() - cpu0) / calls);
    batchServer.push_back((serverCpuMicros(client) - server0) / calls);
    batchUs.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
    batchTrips.push_back(static_cast<double>(counting.roundTrips() - trips0) / calls);
    batchLoads += loaderCalls - loads0;
    t0 = bench::Clock::now();
    for (int c = 0; c < calls; ++c) {
      for (const auto& key : keysFor()) {
        if (cache.getOrLoad(key, [&] { return row; }).id != row.id) {
          throw std::runtime_error("bench: wrong row");
        }
      }
    }
    t1 = bench::Clock::now();
    seqUs.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
    ratios.push_back(seqUs.back() / batchUs.back());
    server0 = serverCpuMicros(client);
    cpu0 = threadCpuMicros();
    t0 = bench::Clock::now();
    for (int c = 0; c < calls; ++c) {
      std::vector<std::string> keys = handWarm;
      const std::string fresh = "bench-batch-hand-" + runId + ":m" + std::to_string(serial++) + ":";
      for (int i = 0; i < 10; ++i) {
        keys.push_back(fresh + std::to_string(i));
      }
      byHand(keys);
    }
    t1 = bench::Clock::now();
    handCpu.push_back((threadCpuMicros() - cpu0) / calls);
    handServer.push_back((serverCpuMicros(client) - server0) / calls);
    handUs.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
    handRatios.push_back(batchUs.back() / handUs.back());
  }
  if (batchLoads != static_cast<std::size_t>(calls * cfg.reps)) {
    throw std::runtime_error("bench: a batch called its loader more than once");
  }
  const double speedup = bench::median(ratios);
  table.add({"6 batch",
             "100 keys, 10 missing, 1 product each, instant loader; vs 100 sequential getOrLoad",
             bench::format("%.0f µs/batch, %.2f round trips, 1 loader call", bench::median(batchUs),
                           bench::median(batchTrips)),
             bench::format("%.0f µs", bench::median(seqUs)), bench::format("%.1f× faster", speedup),
             "≥ 20×, 2 round trips", verdict(speedup >= 20 && bench::median(batchTrips) <= 2.0)});
  table.add({"6 batch", "same batch; vs its commands by hand (2 pipelines, no leases or fences)",
             bench::format("%.0f µs/batch", bench::median(batchUs)),
             bench::format("%.0f µs", bench::median(handUs)),
             bench::format("time %.2f", bench::median(handRatios)), "—", "—"});
  table.add({"6 batch", "same; CPU per batch: the bench thread's + redis-server's (INFO cpu)",
             bench::format("%.0f + %.0f µs", bench::median(batchCpu), bench::median(batchServer)),
             bench::format("%.0f + %.0f µs", bench::median(handCpu), bench::median(handServer)),
             bench::format("CPU %.2f", (bench::median(batchCpu) + bench::median(batchServer)) /
                                           (bench::median(handCpu) + bench::median(handServer))),
             "—", "—"});
}

// What a tag costs a hit (one more GET in the lookup's pipeline, the check of the record's
// stamp), and invalidateTag over 1,000 tagged keys against invalidate of the 1,000 keys.
void tagCosts(const Config& cfg, cacheaside::HiredisClient& client, const Products& products,
              const std::string& runId, bench::Table& table) {
  JsonCache cache(client, cacheOptions("bench-tags-" + runId));
  cacheaside::CallOptions tagged;
  tagged.tags = {"category:books"};
  const auto load = [&products] { return products; };
  cache.getOrLoad("plain", load);
  cache.getOrLoad("tagged", load, tagged);
  std::vector<Case> cases;
  cases.push_back({"untagged",
                   1,
                   [&] {
                     return bench::timedRun(1, cfg.hitDuration, true, [&](int) {
                       return [&] { consume(cache.getOrLoad("plain", mustNotLoad)); };
                     });
                   },
                   -1,
                   {}});
  cases.push_back({"tagged",
                   1,
                   [&] {
                     return bench::timedRun(1, cfg.hitDuration, true, [&](int) {
                       return [&] { consume(cache.getOrLoad("tagged", mustNotLoad, tagged)); };
                     });
                   },
                   0,
                   {}});
  runInterleaved(cases, cfg.reps);
  table.add({"7 tags", "hit of a value with 1 tag, JSON, 1 thr; vs the same value untagged",
             latencyCell(cases[1]), latencyCell(cases[0]),
             bench::format("time/op %.2f", timeRatio(cases[1], cases[0])), "0 extra round trips",
             "—"});
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i) {
    keys.push_back("t" + std::to_string(i));
    cache.getOrLoad(keys.back(), load, tagged);
  }
  std::vector<double> tagUs, keysUs;
  for (int rep = 0; rep < cfg.reps; ++rep) {
    auto t0 = bench::Clock::now();
    cache.invalidateTag("category:books");
    auto t1 = bench::Clock::now();
    tagUs.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    t0 = bench::Clock::now();
    cache.invalidate(keys);
    t1 = bench::Clock::now();
    keysUs.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  table.add({"7 tags", "invalidate 1,000 tagged keys: invalidateTag vs invalidate(1,000 keys)",
             bench::format("%.0f µs, 1 command", bench::median(tagUs)),
             bench::format("%.0f µs, 1,000 commands", bench::median(keysUs)),
             bench::format("time %.3f", bench::median(tagUs) / bench::median(keysUs)),
             "O(1) commands", "—"});
}

int freeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("bench: cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// 6. Near cache: hits served in process (shared and copied) against the Redis hit, on 1 and 2
// threads with a key per thread; invalidation by another connection seen locally; the bound.
void nearSection(const Config& cfg, cacheaside::HiredisClient& client, const Products& products,
                 bench::Table& table) {
  cacheaside::near::HiredisFeedOptions fo;
  fo.redis = poolOptions(cfg, 1);
  fo.namespaces = {"bench-near"};
  fo.lagLimit = 1000ms; // a loaded machine: the section measures, it does not flush
  auto feed = std::make_shared<cacheaside::near::HiredisInvalidationFeed>(fo);
  if (!feed->waitUntilUp(10s)) {
    throw std::runtime_error("bench: the invalidation feed did not come up");
  }
  cacheaside::CacheOptions o = cacheOptions("bench-near");
  o.nearCache.feed = feed;
  o.nearCache.maxTtl = std::chrono::hours(1);
  JsonCache nearCache(client, o);
  JsonCache redisOnly(client, cacheOptions("bench-near"));
  const auto key = [](int t) { return "near:" + std::to_string(t); };
  for (int t = 0; t < 2; ++t) {
    redisOnly.set(key(t), products, std::chrono::hours(1));
  }
  // Until each key is held (its write's invalidation may evict the first install).
  const auto hold = [&nearCache](const std::string& k) {
    for (int i = 0; i < 1000; ++i) {
      const auto a = nearCache.getOrLoadShared(k, mustNotLoad);
      if (a.get() == nearCache.getOrLoadShared(k, mustNotLoad).get()) {
        return;
      }
      std::this_thread::sleep_for(1ms);
    }
    throw std::runtime_error("bench: the near cache never held " + k);
  };
  hold(key(0));
  hold(key(1));
  const auto d = cfg.hitDuration;
  std::vector<Case> cases;
  const auto add = [&](std::string label, int threads, int baseline, auto makeOp) {
    cases.push_back(
        Case{std::move(label),
             threads,
             [threads, d, makeOp] { return bench::timedRun(threads, d, false, makeOp); },
             baseline,
             {}});
  };
  for (int threads : {1, 2}) {
    const int base = static_cast<int>(cases.size());
    add("Redis hit (JSON, near cache off)", threads, -1,
        [&redisOnly, key](int t) { return cacheHit(redisOnly, key(t)); });
    add("near hit, getOrLoadShared (no copy)", threads, base, [&nearCache, key](int t) {
      return [&nearCache, k = key(t)] {
        const auto v = nearCache.getOrLoadShared(k, mustNotLoad);
        if (v->empty()) {
          throw std::runtime_error("bench: empty value");
        }
      };
    });
    add("near hit, getOrLoad (T copied)", threads, base,
        [&nearCache, key](int t) { return cacheHit(nearCache, key(t)); });
  }
  runInterleaved(cases, cfg.reps);
  const auto opsOf = [](const Case& c) {
    return medianOf(c.results, [](const TimedResult& r) { return r.opsPerSec; });
  };
  double oneThreadShared = 0;
  for (const Case& c : cases) {
    if (c.baseline < 0) {
      continue;
    }
    const Case& base = cases[static_cast<std::size_t>(c.baseline)];
    const double speedup = 1.0 / timeRatio(c, base);
    const bool shared = c.label.find("Shared") != std::string::npos;
    const double target = shared ? 100.0 : 20.0;
    if (shared && c.threads == 1) {
      oneThreadShared = opsOf(c);
    }
    table.add({"6 near", c.label + ", " + std::to_string(c.threads) + " thr, own keys",
               bench::format("%s ops/s", bench::opsText(opsOf(c)).c_str()),
               bench::format("%s ops/s (Redis hit)", bench::opsText(opsOf(base)).c_str()),
               bench::format("%.0f× faster", speedup), bench::format("≥ %.0f×", target),
               verdict(speedup >= target)});
    if (shared && c.threads == 2 && oneThreadShared > 0) {
      table.add({"6 near", "near hit scaling, 2 thr ÷ 1 thr (getOrLoadShared)",
                 bench::format("%.2f×", opsOf(c) / oneThreadShared), "", "", "> 1 (2 cores)",
                 verdict(opsOf(c) / oneThreadShared > 1.0)});
    }
  }

  // Another connection rewrites a held key; time until the near tier has dropped it.
  bench::RawConn writer(cfg.port, 1000ms);
  const std::string redisKey = cacheaside::store::valueKey("bench-near", key(0));
  const bench::ReplyPtr record = writer.command({"GET", redisKey});
  const std::string bytes(record->str, record->len);
  std::vector<double> seenUs;
  for (int i = 0; i < 500 * cfg.reps; ++i) {
    hold(key(0));
    const auto before = nearCache.nearStats().invalidations;
    const auto t0 = bench::Clock::now();
    writer.command({"SET", redisKey, bytes, "PX", "3600000"});
    seenUs.push_back(microsUntilInvalidated(nearCache, before, t0));
  }
  const Seen seen = describeSeen(std::move(seenUs));
  table.add({"6 near", "invalidation by another connection seen locally (SET sent → evicted)",
             seen.cell, "", "", "p99 ≤ 2 ms", verdict(seen.p99 <= 2000)});

  // The bound: 4,000 distinct keys read 5 times each through a near cache bounded at 1 MiB.
  cacheaside::CacheOptions bounded = o;
  bounded.nearCache.bounds.maxBytes = std::size_t{1} << 20;
  bounded.nearCache.bounds.maxEntries = 100000;
  JsonCache small(client, bounded);
  std::size_t peak = 0;
  for (int i = 0; i < 20000; ++i) {
    small.getOrLoad("mem:" + std::to_string(i % 4000), [&products] { return products; });
    peak = std::max(peak, small.nearStats().bytes);
  }
  const auto ns = small.nearStats();
  table.add({"6 near", "memory: 4,000 keys × 5 reads through a 1 MiB near cache",
             bench::format("peak %zu bytes charged, %zu entries held, %llu evicted", peak,
                           ns.entries, static_cast<unsigned long long>(ns.evictions)),
             "", "", "≤ 1,048,576 bytes", verdict(peak <= (std::size_t{1} << 20))});
}

// 5. Outage: time per getOrLoad (instant loader) with nothing listening on the Redis port,
// with the circuit breaker as configured by default (open after 5 failures) and with a breaker
// that never opens (every call tries to connect and is refused).
void outage(const Config& cfg, const Products& products, bench::Table& table) {
  cacheaside::HiredisOptions down;
  down.port = freeLoopbackPort();
  const auto loader = [&products] { return products; };
  const int n = 2000;
  std::vector<double> open, closed, direct;
  for (int rep = 0; rep < cfg.reps; ++rep) {
    for (int variant = 0; variant < 3; ++variant) {
      cacheaside::HiredisClient client(down);
      cacheaside::CacheOptions o = cacheOptions("bench-outage");
      if (variant == 1) {
        o.breakerThreshold = 1u << 30;
      }
      JsonCache cache(client, o);
      consume(cache.getOrLoad("warm-up", loader)); // the breaker opens here (or not)
      const auto t0 = bench::Clock::now();
      for (int i = 0; i < n; ++i) {
        if (variant == 2) {
          consume(loader());
        } else {
          consume(cache.getOrLoad("k" + std::to_string(i % 100), loader));
        }
      }
      const double us =
          std::chrono::duration<double, std::micro>(bench::Clock::now() - t0).count() / n;
      (variant == 0 ? open : variant == 1 ? closed : direct).push_back(us);
    }
  }
  table.add({"5 outage", "nothing listening at the Redis port; breaker open (default)",
             bench::format("%.2f µs/call", bench::median(open)),
             bench::format("%.2f µs/call (loader alone)", bench::median(direct)), "", "bounded",
             "—"});
  table.add({"5 outage", "same, breaker never opens: every call is refused a connection",
             bench::format("%.2f µs/call", bench::median(closed)),
             bench::format("%.2f µs/call (loader alone)", bench::median(direct)), "", "bounded",
             "—"});
}

// 6. Redis Cluster: the hit path through HiredisClusterClient against HiredisClient, same
// payload, same run; then the 4 × 50 stampede on the cluster.
void clusterSection(const Config& cfg, const Products& products, const std::string& payload,
                    const std::string& runId, bench::Table& table) {
  cacheaside::HiredisClusterOptions co;
  co.seeds = {"127.0.0.1:" + std::to_string(cfg.clusterPort)};
  co.node = poolOptions(cfg, 8);
  if (cfg.commandTimeout.count() > 0) {
    co.callTimeout = 2 * cfg.commandTimeout; // room for a round trip and a retry
  }
  {
    cacheaside::HiredisClient standaloneClient(poolOptions(cfg, 8));
    cacheaside::HiredisClusterClient clusterClient(co);
    JsonCache standalone(standaloneClient, cacheOptions("bench-json"));
    JsonCache cluster(clusterClient, cacheOptions("bench-json"));
    for (int t = 0; t < 2; ++t) {
      const std::string key = "hit:" + std::to_string(t);
      standalone.set(key, products, std::chrono::hours(1));
      cluster.set(key, products, std::chrono::hours(1));
    }
    const auto ownKey = [](int t) { return "hit:" + std::to_string(t); };
    const auto d = cfg.hitDuration;
    std::vector<Case> cases;
    for (int threads : {1, 2}) {
      cases.push_back(Case{"standalone",
                           threads,
                           [threads, d, &standalone, ownKey] {
                             return bench::timedRun(threads, d, true, [&standalone, ownKey](int t) {
                               return cacheHit(standalone, ownKey(t));
                             });
                           },
                           -1,
                           {}});
      cases.push_back(Case{"cluster",
                           threads,
                           [threads, d, &cluster, ownKey] {
                             return bench::timedRun(threads, d, true, [&cluster, ownKey](int t) {
                               return cacheHit(cluster, ownKey(t));
                             });
                           },
                           static_cast<int>(cases.size()) - 1,
                           {}});
    }
    runInterleaved(cases, cfg.reps);
    for (const Case& c : cases) {
      if (c.baseline < 0) {
        continue;
      }
      const Case& base = cases[static_cast<std::size_t>(c.baseline)];
      const double tr = timeRatio(c, base);
      const double pr = p50Ratio(c, base);
      table.add({"6 cluster",
                 "hit, JSON, " + std::to_string(c.threads) +
                     " thr, own keys: HiredisClusterClient vs HiredisClient (standalone)",
                 latencyCell(c), latencyCell(base), bench::format("time/op %.3f, p50 %.3f", tr, pr),
                 "≤ 1.05", verdict(tr <= 1.05 && pr <= 1.05)});
    }
    if (cluster.stats().loads != 0 || standalone.stats().loads != 0) {
      throw std::runtime_error("bench: the cluster hit path loaded");
    }
  }
  {
    // The near cache on the cluster (a feed per master): another client's SET of a held key,
    // time until the near tier dropped it, over keys on every master.
    cacheaside::HiredisClusterClient nearClient(co);
    cacheaside::HiredisClusterClient writerClient(co);
    cacheaside::near::ClusterFeedOptions fo;
    fo.namespaces = {"bench-near-cluster"};
    fo.lagLimit = 1000ms; // a loaded machine: the section measures, it does not flush
    auto feed = std::make_shared<cacheaside::near::HiredisClusterInvalidationFeed>(nearClient, fo);
    if (!feed->waitUntilUp(10s)) {
      throw std::runtime_error("bench: the cluster invalidation feed did not come up");
    }
    cacheaside::CacheOptions o = cacheOptions("bench-near-cluster");
    o.nearCache.feed = feed;
    o.nearCache.maxTtl = std::chrono::hours(1);
    JsonCache nearCache(nearClient, o);
    JsonCache writer(writerClient, cacheOptions("bench-near-cluster"));
    std::vector<double> seenUs;
    for (int i = 0; i < 500 * cfg.reps; ++i) {
      const std::string k = "near:" + std::to_string(i % 30); // 30 keys: every master
      writer.set(k, products, std::chrono::hours(1));
      bool held = false;
      for (int tries = 0; tries < 1000 && !held; ++tries) {
        const auto a = nearCache.getOrLoadShared(k, mustNotLoad);
        held = a.get() == nearCache.getOrLoadShared(k, mustNotLoad).get();
      }
      if (!held) {
        throw std::runtime_error("bench: the near cache never held " + k + " on the cluster");
      }
      const auto before = nearCache.nearStats().invalidations;
      const auto t0 = bench::Clock::now();
      writer.set(k, products, std::chrono::hours(1));
      seenUs.push_back(microsUntilInvalidated(nearCache, before, t0));
    }
    const Seen seen = describeSeen(std::move(seenUs));
    table.add({"6 cluster",
               "near cache: another client's set seen locally (set sent → evicted), 3 masters",
               seen.cell, "", "", "p99 ≤ 2 ms", verdict(seen.p99 <= 2000)});
  } // no thread of ours runs while the stampede forks
  std::vector<double> loads;
  std::vector<double> wall;
  long long failures = 0;
  for (int rep = 0; rep < cfg.reps; ++rep) {
    const std::string key = "st:" + runId + ":cluster:" + std::to_string(rep);
    const bench::StampedeResult r =
        bench::stampede(bench::StampedeMode::CacheShared, 4, 50, poolOptions(cfg, 8), products,
                        payload, key, key + ":loads", co.seeds.front());
    loads.push_back(static_cast<double>(r.loads));
    wall.push_back(r.wallMs);
    failures += r.failures + r.redisErrors + r.waitTimeouts;
  }
  const double worst = *std::max_element(loads.begin(), loads.end());
  table.add(
      {"6 cluster", "stampede, 4 proc × 50 thr, cold key, 100 ms loader, on the cluster",
       bench::format("loads %.0f (worst %.0f), %.0f ms%s", bench::median(loads), worst,
                     bench::median(wall),
                     failures != 0 ? bench::format(" [%lld failures]", failures).c_str() : ""),
       "—", "—", "1 load", verdict(worst <= 1.0 && failures == 0)});
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("bench: cannot read " + path);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Config parseArgs(int argc, char** argv) {
  Config cfg;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool hasValue = i + 1 < argc;
    if (a == "--port" && hasValue) {
      cfg.port = std::atoi(argv[++i]);
    } else if (a == "--cluster" && hasValue) {
      cfg.clusterPort = std::atoi(argv[++i]);
    } else if (a == "--data" && hasValue) {
      cfg.dataPath = argv[++i];
    } else if (a == "--placement" && hasValue) {
      cfg.placement = argv[++i];
    } else if (a == "--reps" && hasValue) {
      cfg.reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--sections" && hasValue) {
      cfg.sections = argv[++i];
    } else if (a == "--command-timeout" && hasValue) {
      cfg.commandTimeout = std::chrono::milliseconds(std::max(1, std::atoi(argv[++i])));
    } else if (a == "--profile" && hasValue) {
      cfg.profile = argv[++i];
    } else if (a == "--ops" && hasValue) {
      cfg.profileOps = std::max(1L, std::atol(argv[++i]));
    } else if (a == "--quick") {
      cfg.hitDuration = 25ms;
      cfg.scaleDuration = 15ms;
      cfg.missesPerRun = 200;
    } else {
      throw std::runtime_error(
          "usage: bench --port PORT --data products-20.json [--cluster PORT] [--placement TEXT] "
          "[--reps N] [--quick] "
          "[--sections hit,miss,near,stampede,scaling,outage,batch,tags,compression,codec,cluster] "
          "[--command-timeout MS] "
          "[--profile hand|json|msgpack|cbor|msgpack-cxx|raw-set-get [--ops N]]");
    }
  }
  if (cfg.port <= 0 || cfg.dataPath.empty()) {
    throw std::runtime_error("bench: --port and --data are required");
  }
  return cfg;
}

} // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  try {
    const Config cfg = parseArgs(argc, argv);
    const std::string fileBytes = readFile(cfg.dataPath);
    const Products products = nlohmann::json::parse(fileBytes).get<Products>();
    if (products.empty()) {
      throw std::runtime_error("bench: the payload holds no product");
    }
    gProductCount = products.size();
    gFirstId = products.front().id;
    const std::string payload = nlohmann::json(products).dump();
    std::string msgpack;
    cacheaside::MsgPackSerializer<Products>::encode(products, msgpack);
    std::string cbor;
    cacheaside::CborSerializer<Products>::encode(products, cbor);
    std::string msgpackCxx;
    cacheaside::MsgpackSerializer<Products>::encode(products, msgpackCxx);
    const std::string runId =
        std::to_string(::getpid()) + "-" + std::to_string(bench::monoNanos() % 1000000007);
    if (!cfg.profile.empty()) {
      profileOne(cfg, products, payload);
      return 0;
    }
    const auto started = bench::Clock::now();

    bench::Table table({"#", "case", "cacheaside", "hand-written / naive", "cacheaside ÷ other",
                        "target", "result"});
    {
      // The hit-path pool: more connections than threads, so no call ever waits for one.
      cacheaside::HiredisClient client(poolOptions(cfg, 8));
      if (wanted(cfg, "hit")) {
        hitPath(cfg, client, products, payload, table);
      }
      if (wanted(cfg, "miss")) {
        missPath(cfg, client, products, runId, table);
      }
      if (wanted(cfg, "near")) {
        nearSection(cfg, client, products, table);
      }
    } // no thread of ours runs while the stampede forks
    if (wanted(cfg, "stampede")) {
      stampedes(cfg, products, payload, runId, table);
    }
    if (wanted(cfg, "scaling")) {
      scaling(cfg, products, payload, table);
    }
    if (wanted(cfg, "outage")) {
      outage(cfg, products, table);
    }
    if (wanted(cfg, "batch") || wanted(cfg, "tags")) {
      cacheaside::HiredisClient client(poolOptions(cfg, 8));
      if (wanted(cfg, "batch")) {
        batchPath(cfg, client, products, runId, table);
      }
      if (wanted(cfg, "tags")) {
        tagCosts(cfg, client, products, runId, table);
      }
    }
    if (wanted(cfg, "cluster") && cfg.clusterPort > 0) {
      clusterSection(cfg, products, payload, runId, table);
    }

    std::printf("\npayload: %zu products; JSON %zu bytes (file %zu), MessagePack %zu, CBOR %zu, "
                "msgpack-cxx %zu; records add a %zu-byte header and expiry stamp\n",
                products.size(), payload.size(), fileBytes.size(), msgpack.size(), cbor.size(),
                msgpackCxx.size(),
                cacheaside::envelope::kExpiryStampAt + cacheaside::envelope::kExpiryStampSize);
    std::printf("placement: %s; every figure is the median of %d interleaved runs; ratios are "
                "medians of per-run ratios (time/op = inverse of ops/s)\n\n",
                cfg.placement.c_str(), cfg.reps);
    table.print(stdout);
    if (wanted(cfg, "compression")) {
      compression(cfg, products);
    }
    if (wanted(cfg, "codec")) {
      bench::codecSection(products, cfg.reps);
    }
    std::printf("\nbench took %.0f s\n",
                std::chrono::duration<double>(bench::Clock::now() - started).count());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
