// The chaos run: N worker processes x T threads read and write through cacheaside over a real
// redis-server, with a second redis-server as the source of truth, while faults are injected on
// a schedule. Checks every read as it returns and prints one table. See README, "Chaos run".
//
//   chaos --seconds 300 --processes 4 --readers 6 --writers 1
//
// Exit status: 0 when no read failed, no read was stale and no worker crashed (with --strict,
// also no call over its bound and no extra load outside fault windows); 1 otherwise; 2 on a
// usage or setup error.

#include "redis_process.hpp"
#include "shared.hpp"
#include "worker.hpp"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace chaos {
namespace {

constexpr std::int64_t kMs = 1000000;

// Prints the usage (to stderr, after why, when why is not empty) and exits: 0 for --help, else 2.
[[noreturn]] void usage(const std::string& why) {
  std::FILE* out = why.empty() ? stdout : stderr;
  if (!why.empty()) {
    std::fprintf(out, "chaos: %s\n", why.c_str());
  }
  std::fprintf(
      out, "usage: chaos [--seconds S] [--processes P] [--readers T] [--writers W]\n"
           "  [--keys K] [--expiring-keys E] [--load-ms L] [--think-ms M] [--write-every-ms M]\n"
           "  [--faults kill,pause,sleep,holder,clientkill|none] [--gap-ms G] [--warmup-ms W]\n"
           "  [--cache-per-thread] [--fork-after-use] [--command-timeout-ms C] [--lock-ttl-ms L]\n"
           "  [--wait-budget-ms B] [--expiring-ttl-ms T] [--xfetch-beta X] [--pause-ms P]\n"
           "  [--sleep-ms S] [--down-ms D] [--slack-ms S] [--seed N] [--strict]\n");
  std::exit(why.empty() ? 0 : 2);
}

Config parse(int argc, char** argv) {
  Config cfg;
  cfg.faults = {Fault::RedisKill, Fault::ClientPause, Fault::DebugSleep, Fault::HolderKill,
                Fault::ClientKill};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage(arg + " needs a value");
      }
      return argv[++i];
    };
    const auto num = [&](int lo, int hi) {
      const std::string v = next();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n < lo || n > hi) {
        usage(arg + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
              "]");
      }
      return static_cast<int>(n);
    };
    if (arg == "--help") {
      usage("");
    } else if (arg == "--seconds") {
      cfg.seconds = num(5, 86400);
    } else if (arg == "--processes") {
      cfg.processes = num(1, 64);
    } else if (arg == "--readers") {
      cfg.readers = num(1, 256);
    } else if (arg == "--writers") {
      cfg.writers = num(0, 64);
    } else if (arg == "--keys") {
      cfg.keys = num(1, kMaxKeys / 2);
    } else if (arg == "--expiring-keys") {
      cfg.expiringKeys = num(0, kMaxKeys / 2);
    } else if (arg == "--load-ms") {
      cfg.loadMs = num(0, 10000);
    } else if (arg == "--think-ms") {
      cfg.thinkMs = num(0, 10000);
    } else if (arg == "--write-every-ms") {
      cfg.writeEveryMs = num(1, 100000);
    } else if (arg == "--gap-ms") {
      cfg.gapMs = num(100, 600000);
    } else if (arg == "--warmup-ms") {
      cfg.warmupMs = num(0, 600000);
    } else if (arg == "--cache-per-thread") {
      cfg.cachePerThread = true;
    } else if (arg == "--fork-after-use") {
      cfg.forkAfterUse = true;
    } else if (arg == "--command-timeout-ms") {
      cfg.commandTimeoutMs = num(1, 60000);
    } else if (arg == "--lock-ttl-ms") {
      cfg.lockTtlMs = num(1, 600000);
    } else if (arg == "--wait-budget-ms") {
      cfg.waitBudgetMs = num(0, 600000);
    } else if (arg == "--expiring-ttl-ms") {
      cfg.expiringTtlMs = num(100, 600000);
    } else if (arg == "--xfetch-beta") {
      cfg.xfetchBeta = std::strtod(next().c_str(), nullptr);
    } else if (arg == "--pause-ms") {
      cfg.pauseMs = num(1, 60000);
    } else if (arg == "--sleep-ms") {
      cfg.sleepMs = num(1, 60000);
    } else if (arg == "--down-ms") {
      cfg.downMs = num(0, 60000);
    } else if (arg == "--slack-ms") {
      cfg.slackMs = num(0, 60000);
    } else if (arg == "--seed") {
      cfg.seed = static_cast<std::uint64_t>(num(0, 1 << 30));
    } else if (arg == "--strict") {
      cfg.strict = true;
    } else if (arg == "--faults") {
      cfg.faults.clear();
      std::stringstream list(next());
      std::string item;
      while (std::getline(list, item, ',')) {
        if (item == "kill") {
          cfg.faults.push_back(Fault::RedisKill);
        } else if (item == "pause") {
          cfg.faults.push_back(Fault::ClientPause);
        } else if (item == "sleep") {
          cfg.faults.push_back(Fault::DebugSleep);
        } else if (item == "holder") {
          cfg.faults.push_back(Fault::HolderKill);
        } else if (item == "clientkill") {
          cfg.faults.push_back(Fault::ClientKill);
        } else if (item != "none") {
          usage("unknown fault " + item);
        }
      }
    } else {
      usage("unknown argument " + arg);
    }
  }
  return cfg;
}

struct WorkerProc {
  pid_t pid = -1;
  std::size_t slot = 0;
};

class Orchestrator {
public:
  Orchestrator(const Config& cfg, Shared& sh) : cfg_(cfg), sh_(sh), rng_(cfg.seed) {}

  int run() {
    source_ = std::make_unique<RedisProcess>(std::vector<std::string>{});
    cache_ =
        std::make_unique<RedisProcess>(std::vector<std::string>{"--enable-debug-command", "local"});
    std::printf("== chaos: cache redis-server pid %d on 127.0.0.1:%d, source redis-server pid %d "
                "on 127.0.0.1:%d\n",
                static_cast<int>(cache_->pid()), cache_->port(), static_cast<int>(source_->pid()),
                source_->port());
    start_ = monoNanos();
    const std::int64_t end = start_ + std::int64_t{cfg_.seconds} * 1000 * kMs;
    hardEnd_ = end + 60 * 1000 * kMs;
    std::fflush(stdout);
    monitor_ = forkMonitor();
    for (int p = 0; p < cfg_.processes; ++p) {
      workers_.push_back(spawn());
    }
    std::int64_t nextFault = start_ + std::int64_t{cfg_.warmupMs} * kMs;
    std::int64_t nextReport = start_ + 10 * 1000 * kMs;
    std::size_t faultIndex = 0;
    for (std::int64_t now = monoNanos(); now < end; now = monoNanos()) {
      reap();
      if (!cfg_.faults.empty() && now >= nextFault && now + faultLength() + 1000 * kMs < end) {
        inject(cfg_.faults[faultIndex++ % cfg_.faults.size()]);
        nextFault = monoNanos() + std::int64_t{cfg_.gapMs} * kMs;
      }
      if (now >= nextReport) {
        progress(now);
        nextReport += 10 * 1000 * kMs;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    runNs_ = monoNanos() - start_;
    stopWorkers();
    reapMonitor();
    cache_.reset();
    source_.reset();
    return report();
  }

private:
  WorkerProc spawn() {
    const std::size_t slot = sh_.slotCount.fetch_add(1);
    if (slot >= kMaxSlots) {
      throw std::runtime_error("too many worker restarts");
    }
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      throw std::runtime_error("fork() failed");
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive the orchestrator
      int rc = 2;
      try {
        rc = runWorker(sh_, cfg_, slot, cache_->port(), source_->port(), hardEnd_);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "chaos: worker failed: %s\n", e.what());
      }
      std::fflush(stderr);
      ::_exit(rc);
    }
    return WorkerProc{pid, slot};
  }

  // A lease a live holder renews every lockTtl / 3 keeps a remaining TTL above 2/3 lockTtl; the
  // monitor counts leases seen below that, less a scheduling margin: nobody renews them.
  std::int64_t orphanThresholdMs() const {
    return std::int64_t{cfg_.lockTtlMs} - cfg_.lockTtlMs / 3 - std::max(100, cfg_.lockTtlMs / 6);
  }

  // A single-threaded process that reads every key's record and remaining TTL every 50 ms. A
  // record that is not "<key>|<version>" (the values this run stores) is a lease.
  pid_t forkMonitor() {
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = ::fork();
    if (pid < 0) {
      throw std::runtime_error("fork() failed");
    }
    if (pid != 0) {
      return pid;
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const pid_t parent = ::getppid();
    const int total = cfg_.keys + cfg_.expiringKeys;
    std::vector<std::string> names, redisKeys;
    for (int k = 0; k < total; ++k) {
      names.push_back(keyName(cfg_, k) + "|");
      redisKeys.push_back("chaos:{" + keyName(cfg_, k) + "}");
    }
    Context conn;
    while (sh_.stop.load() == 0 && monoNanos() < hardEnd_ && ::getppid() == parent) {
      if (!conn) {
        conn = connectTo(cache_->port(), std::chrono::milliseconds(200));
      }
      bool ok = conn != nullptr;
      for (int k = 0; ok && k < total; ++k) {
        const char* get[] = {"GET", redisKeys[static_cast<std::size_t>(k)].c_str()};
        const char* pttl[] = {"PTTL", redisKeys[static_cast<std::size_t>(k)].c_str()};
        ok = redisAppendCommandArgv(conn.get(), 2, get, nullptr) == REDIS_OK &&
             redisAppendCommandArgv(conn.get(), 2, pttl, nullptr) == REDIS_OK;
      }
      for (int k = 0; ok && k < total; ++k) {
        void* raw[2] = {nullptr, nullptr};
        ok = redisGetReply(conn.get(), &raw[0]) == REDIS_OK && raw[0] != nullptr &&
             redisGetReply(conn.get(), &raw[1]) == REDIS_OK && raw[1] != nullptr;
        const ReplyPtr record(static_cast<redisReply*>(raw[0]));
        const ReplyPtr ttl(static_cast<redisReply*>(raw[1]));
        if (!ok || record->type != REDIS_REPLY_STRING || ttl->type != REDIS_REPLY_INTEGER) {
          continue;
        }
        const std::string_view bytes(record->str, record->len);
        const bool lease = bytes.find(names[static_cast<std::size_t>(k)]) == std::string::npos;
        if (lease && ttl->integer >= 0 && ttl->integer < orphanThresholdMs()) {
          const std::size_t i = sh_.orphanCount.fetch_add(1);
          if (i < kMaxOrphans) {
            sh_.orphans[i] = OrphanSeen{monoNanos(), k, ttl->integer};
          }
        }
      }
      if (ok) {
        sh_.monitorSamples.fetch_add(1);
      } else {
        conn.reset();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::_exit(0);
  }

  void reapMonitor() {
    const std::int64_t deadline = monoNanos() + 5 * 1000 * kMs;
    int status = 0;
    while (::waitpid(monitor_, &status, WNOHANG) == 0) {
      if (monoNanos() > deadline) {
        ::kill(monitor_, SIGKILL);
        ::waitpid(monitor_, &status, 0);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // Restarts any worker that exited; one that exited on its own before the end is a crash.
  void reap() {
    for (auto& w : workers_) {
      int status = 0;
      if (::waitpid(w.pid, &status, WNOHANG) == w.pid) {
        ++crashes_;
        std::fprintf(stderr, "chaos: worker %d exited unexpectedly (status %d)\n",
                     static_cast<int>(w.pid), status);
        w = spawn();
      }
    }
  }

  std::int64_t faultLength() const {
    return std::int64_t{std::max({cfg_.downMs, cfg_.pauseMs, cfg_.sleepMs, 3000})} * kMs;
  }

  void window(std::int64_t start, std::int64_t end, Fault f) {
    const std::size_t i = sh_.windowCount.load();
    if (i < kMaxWindows) {
      sh_.windows[i] = Window{start, end, f};
      sh_.windowCount.store(i + 1);
    }
    ++injected_[static_cast<int>(f)];
  }

  // One command on a fresh control connection (never shared with the workers).
  bool control(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
    const Context c = connectTo(cache_->port(), timeout);
    if (!c) {
      return false;
    }
    const ReplyPtr r = command(c.get(), args);
    return r && r->type != REDIS_REPLY_ERROR;
  }

  void inject(Fault f) {
    const std::int64_t start = monoNanos();
    switch (f) {
    case Fault::RedisKill: {
      cache_->kill();
      std::this_thread::sleep_for(std::chrono::milliseconds(cfg_.downMs));
      cache_->restart();
      window(start, monoNanos(), f);
      break;
    }
    case Fault::ClientPause:
      if (control({"CLIENT", "PAUSE", std::to_string(cfg_.pauseMs), "ALL"},
                  std::chrono::milliseconds(2000))) {
        window(start, start + std::int64_t{cfg_.pauseMs} * kMs, f);
      } else {
        ++skipped_;
      }
      break;
    case Fault::DebugSleep: {
      const std::string seconds = std::to_string(cfg_.sleepMs / 1000) + "." +
                                  std::to_string(1000 + cfg_.sleepMs % 1000).substr(1);
      if (control({"DEBUG", "SLEEP", seconds}, std::chrono::milliseconds(cfg_.sleepMs + 2000))) {
        window(start, monoNanos(), f);
      } else {
        ++skipped_;
      }
      break;
    }
    case Fault::HolderKill:
      killHolder();
      break;
    case Fault::ClientKill:
      if (control({"CLIENT", "KILL", "TYPE", "normal"}, std::chrono::milliseconds(2000))) {
        window(start, monoNanos(), f);
      } else {
        ++skipped_;
      }
      break;
    case Fault::Count:
      break;
    }
  }

  // Arms a key; the next loader of it (in any worker) claims it and waits; it is then
  // SIGKILLed, so its lease is left to expire, and the worker is restarted.
  void killHolder() {
    // An expiring key: it is loaded every TTL and never invalidated, so the dead holder's lease
    // stays until it expires (the monitor sees it) and waiters must take over.
    const int k =
        cfg_.expiringKeys > 0
            ? cfg_.keys + static_cast<int>(rng_() % static_cast<std::uint64_t>(cfg_.expiringKeys))
            : static_cast<int>(rng_() % static_cast<std::uint64_t>(cfg_.keys));
    sh_.killKey.store(k);
    sh_.killState.store(1);
    const std::int64_t deadline = monoNanos() + 3000 * kMs;
    while (sh_.killState.load() != 3 && monoNanos() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    int armed = 1;
    if (sh_.killState.compare_exchange_strong(armed, 0)) {
      ++skipped_; // nobody loaded the key in time
      return;
    }
    const std::int64_t claimedBy = monoNanos() + 1000 * kMs;
    while (sh_.killState.load() != 3 && monoNanos() < claimedBy) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const pid_t pid = static_cast<pid_t>(sh_.killPid.load());
    bool ours = false;
    for (auto& w : workers_) {
      if (w.pid == pid) {
        ::kill(pid, SIGKILL);
        int status = 0;
        ::waitpid(pid, &status, 0);
        window(sh_.killClaimNs.load(), monoNanos(), Fault::HolderKill);
        w = spawn();
        ours = true;
        break;
      }
    }
    if (!ours && pid > 0) {
      // A worker's forked child (--fork-after-use): its parent, a worker, reaps it.
      ::kill(pid, SIGKILL);
      window(sh_.killClaimNs.load(), monoNanos(), Fault::HolderKill);
    }
    sh_.killState.store(0);
  }

  void progress(std::int64_t now) {
    std::printf("== t=%3llds reads %llu, failed %llu, stale %llu, invalidates %llu (threw %llu), "
                "faults %zu, crashes %d\n",
                static_cast<long long>((now - start_) / (1000 * kMs)),
                static_cast<unsigned long long>(sh_.reads.load()),
                static_cast<unsigned long long>(sh_.failedReads.load()),
                static_cast<unsigned long long>(sh_.staleReads.load()),
                static_cast<unsigned long long>(sh_.invalidates.load()),
                static_cast<unsigned long long>(sh_.invalidateErrors.load()),
                sh_.windowCount.load(), crashes_);
    std::fflush(stdout);
  }

  void stopWorkers() {
    sh_.stop.store(1);
    const std::int64_t deadline = monoNanos() + 20 * 1000 * kMs;
    for (auto& w : workers_) {
      int status = 0;
      while (::waitpid(w.pid, &status, WNOHANG) == 0) {
        if (monoNanos() > deadline) {
          std::fprintf(stderr, "chaos: worker %d did not stop in time; SIGKILL\n",
                       static_cast<int>(w.pid));
          ::kill(w.pid, SIGKILL);
          ::waitpid(w.pid, &status, 0);
          ++crashes_;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
        ++crashes_;
      }
    }
  }

  // --- analysis ---

  // How long after a window its effects may last: an orphaned or dead holder's lease expires
  // within lockTtl, and a call that began just before may need one more timeout and a load.
  std::int64_t aftermath() const {
    return (std::int64_t{cfg_.lockTtlMs} + cfg_.commandTimeoutMs + cfg_.loadMs + 200) * kMs;
  }

  // The fault window [start, end + aftermath] that overlaps [a, b], or -1.
  int windowOf(std::int64_t a, std::int64_t b) const {
    const std::size_t n = std::min(sh_.windowCount.load(), kMaxWindows);
    for (std::size_t i = 0; i < n; ++i) {
      const Window& w = sh_.windows[i];
      if (a <= w.endNs + aftermath() && b >= w.startNs) {
        return static_cast<int>(i);
      }
    }
    return -1;
  }

  struct Groups {
    std::size_t groups = 0, loads = 0, maxPerGroup = 0, groupsOverOne = 0;
    std::size_t overOneRefresh = 0, overOneRedisError = 0, overOneUnexplained = 0;
    std::size_t inWindows = 0, duringInvalidate = 0;
    std::vector<std::string> worst;
  };

  void addGroup(Groups& g, const std::vector<const LoadRecord*>& members, bool duringInvalidate) {
    if (members.empty()) {
      return;
    }
    for (const auto* m : members) {
      if (windowOf(m->startNs, m->startNs) >= 0) {
        g.inWindows += members.size();
        return;
      }
    }
    if (duringInvalidate) {
      g.duringInvalidate += members.size();
      return;
    }
    ++g.groups;
    g.loads += members.size();
    g.maxPerGroup = std::max(g.maxPerGroup, members.size());
    if (members.size() > 1) {
      ++g.groupsOverOne;
      bool refresh = false, miss = false;
      for (const auto* m : members) {
        (m->refresh != 0 ? refresh : miss) = true;
      }
      const char* why = "unexplained";
      if (redisErrorNear(members.front()->startNs - 2 * aftermath() / 3, members.back()->startNs)) {
        ++g.overOneRedisError;
        why = "a Redis error just before";
      } else if (refresh && miss) {
        ++g.overOneRefresh;
        why = "an early refresh and a miss";
      } else {
        ++g.overOneUnexplained;
      }
      if (g.worst.size() < 8) {
        std::string s = keyName(cfg_, members.front()->key) + " (" + why + "): loads at t=";
        for (const auto* m : members) {
          s += std::to_string(static_cast<double>(m->startNs - start_) / 1e9).substr(0, 7) +
               (m->refresh != 0 ? "s (refresh) " : "s ");
        }
        g.worst.push_back(s);
      }
    }
  }

  // The longest time [a, b] overlaps a stall of process pid (any process when pid is 0).
  std::int64_t stalledDuring(std::int32_t pid, std::int64_t a, std::int64_t b) const {
    const std::size_t n = std::min(sh_.stallCount.load(), kMaxStalls);
    std::int64_t most = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const Stall& st = sh_.stalls[i];
      if (pid == 0 || st.pid == pid) {
        most = std::max(most, std::min(b, st.endNs) - std::max(a, st.startNs));
      }
    }
    return most;
  }

  std::size_t redisErrorsIn(std::int64_t a, std::int64_t b) const {
    const std::size_t n = std::min(sh_.errorCount.load(), kMaxErrors);
    std::size_t count = 0;
    for (std::size_t i = 0; i < n; ++i) {
      count += sh_.errors[i].invalidate == 0 && sh_.errors[i].ns >= a && sh_.errors[i].ns <= b;
    }
    return count;
  }

  // Whether any cache reported a Redis error (any key: the breaker is shared) in [a, b].
  bool redisErrorNear(std::int64_t a, std::int64_t b) const {
    const std::size_t n = std::min(sh_.errorCount.load(), kMaxErrors);
    for (std::size_t i = 0; i < n; ++i) {
      if (sh_.errors[i].invalidate == 0 && sh_.errors[i].ns >= a && sh_.errors[i].ns <= b) {
        return true;
      }
    }
    return false;
  }

  // Written keys: one group per (key, invalidation generation). Expiring keys: loads of a key
  // less than half a TTL after the first load of its group belong to that group.
  std::pair<Groups, Groups> loadGroups() {
    const std::size_t n = std::min(sh_.loadCount.load(), kMaxLoads);
    std::vector<const LoadRecord*> recs;
    for (std::size_t i = 0; i < n; ++i) {
      if (sh_.loads[i].key >= 0) {
        recs.push_back(&sh_.loads[i]);
      }
    }
    std::sort(recs.begin(), recs.end(), [](const LoadRecord* a, const LoadRecord* b) {
      return a->key != b->key ? a->key < b->key : a->startNs < b->startNs;
    });
    Groups written, expiring;
    std::vector<const LoadRecord*> members;
    bool during = false;
    const auto flush = [&](Groups& g) {
      addGroup(g, members, during);
      members.clear();
      during = false;
    };
    std::map<std::pair<int, std::int64_t>, std::vector<const LoadRecord*>> byGeneration;
    for (const auto* r : recs) {
      if (r->key < cfg_.keys) {
        byGeneration[{r->key, r->generation}].push_back(r);
      }
    }
    for (auto& [id, group] : byGeneration) {
      members = group;
      for (const auto* m : group) {
        during = during || m->duringInvalidate != 0;
      }
      flush(written);
    }
    const std::int64_t half = std::int64_t{cfg_.expiringTtlMs} * kMs / 2;
    for (const auto* r : recs) {
      if (r->key < cfg_.keys) {
        continue;
      }
      if (!members.empty() &&
          (members.front()->key != r->key || r->startNs - members.front()->startNs >= half)) {
        flush(expiring);
      }
      members.push_back(r);
    }
    flush(expiring);
    return {written, expiring};
  }

  static std::string ms(std::int64_t ns) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(ns) / 1e6);
    return buf;
  }

  static std::string ratio(double a, double b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", b > 0 ? a / b : 0.0);
    return buf;
  }

  static std::string groupsText(const Groups& g) {
    if (g.groups == 0) {
      return "no loads outside fault windows";
    }
    return "mean " + ratio(static_cast<double>(g.loads), static_cast<double>(g.groups)) + ", max " +
           std::to_string(g.maxPerGroup) + " (" + std::to_string(g.loads) + " loads, " +
           std::to_string(g.groups) + " expiries, " + std::to_string(g.groupsOverOne) +
           " with more than one: " + std::to_string(g.overOneRedisError) +
           " after a Redis error, " + std::to_string(g.overOneRefresh) +
           " an early refresh and a miss, " + std::to_string(g.overOneUnexplained) +
           " unexplained)";
  }

  int report() {
    const std::int64_t oneTimeout =
        std::int64_t{cfg_.poolWaitMs + cfg_.connectTimeoutMs + cfg_.commandTimeoutMs} * kMs;
    const std::int64_t readBound = oneTimeout + std::int64_t{cfg_.waitBudgetMs} * kMs +
                                   std::int64_t{cfg_.pollMaxMs + cfg_.loadMs + cfg_.slackMs} * kMs;
    const std::int64_t invalidateBound = oneTimeout + std::int64_t{cfg_.slackMs} * kMs;

    // Slow calls: the slowest outside windows, the slowest per fault, and calls over the bound.
    const std::size_t nslow = std::min(sh_.slowCount.load(), kMaxSlow);
    std::int64_t slowestOutside = 0, slowestInvOutside = 0;
    std::size_t overBound = 0, overBoundUnstalled = 0;
    std::vector<std::string> overBoundText;
    std::int64_t perFaultSlowest[static_cast<int>(Fault::Count)] = {};
    std::size_t perFaultSlowCalls[static_cast<int>(Fault::Count)] = {};
    std::string slowestWhere = "outside fault windows";
    for (std::size_t i = 0; i < nslow; ++i) {
      const SlowCall& c = sh_.slow[i];
      const std::int64_t d = c.endNs - c.startNs;
      const int w = windowOf(c.startNs, c.endNs);
      const std::int64_t bound = c.invalidate != 0 ? invalidateBound : readBound;
      if (d > bound) {
        ++overBound;
        const std::int64_t stalled = stalledDuring(c.pid, c.startNs, c.endNs);
        if (d - stalled > bound) {
          ++overBoundUnstalled;
        }
        if (overBoundText.size() < 10) {
          overBoundText.push_back(
              std::string(c.invalidate != 0 ? "invalidate(" : "getOrLoad(") + keyName(cfg_, c.key) +
              (c.threw != 0 ? ") threw" : ") returned") + " at t=" +
              std::to_string(static_cast<double>(c.startNs - start_) / 1e9).substr(0, 7) +
              "s took " + ms(d) + " (bound " + ms(bound) + "), pid " + std::to_string(c.pid) +
              ", " + (w < 0 ? "outside fault windows" : faultName(sh_.windows[w].fault)) +
              ", its process stalled " + ms(stalled) + ", Redis errors reported meanwhile: " +
              std::to_string(redisErrorsIn(c.startNs, c.endNs)));
        }
      }
      if (w < 0) {
        (c.invalidate != 0 ? slowestInvOutside : slowestOutside) =
            std::max(c.invalidate != 0 ? slowestInvOutside : slowestOutside, d);
      } else if (c.invalidate == 0) {
        const int f = static_cast<int>(sh_.windows[w].fault);
        ++perFaultSlowCalls[f];
        perFaultSlowest[f] = std::max(perFaultSlowest[f], d);
        if (d == sh_.maxReadNs.load()) {
          slowestWhere = faultName(sh_.windows[w].fault);
        }
      }
    }
    const std::string under = "< " + std::to_string(cfg_.slowMs) + " ms";
    const auto orUnder = [&](std::int64_t v) { return v > 0 ? ms(v) : under; };

    const auto [written, expiring] = loadGroups();

    // Unrenewed leases: consecutive sightings of one key with a falling TTL are one lease; it
    // was taken about lockTtl - pttl before it was first seen.
    std::size_t orphansPerFault[static_cast<int>(Fault::Count)] = {};
    std::size_t orphansOutside = 0, orphansStalled = 0;
    {
      const std::size_t n = std::min(sh_.orphanCount.load(), kMaxOrphans);
      std::vector<OrphanSeen> seen(sh_.orphans, sh_.orphans + n);
      std::sort(seen.begin(), seen.end(), [](const OrphanSeen& a, const OrphanSeen& b) {
        return a.key != b.key ? a.key < b.key : a.ns < b.ns;
      });
      for (std::size_t i = 0; i < seen.size(); ++i) {
        const bool continues = i > 0 && seen[i - 1].key == seen[i].key &&
                               seen[i].ns - seen[i - 1].ns < 200 * kMs &&
                               seen[i].pttl <= seen[i - 1].pttl;
        if (continues) {
          continue;
        }
        const std::int64_t taken = seen[i].ns - (cfg_.lockTtlMs - seen[i].pttl) * kMs;
        const int w = windowOf(taken, seen[i].ns);
        if (w < 0 && stalledDuring(0, taken, seen[i].ns) > 0) {
          ++orphansStalled;
        } else if (w < 0) {
          ++orphansOutside;
        } else {
          ++orphansPerFault[static_cast<int>(sh_.windows[w].fault)];
        }
      }
    }
    std::size_t errors = 0, errorsOutside = 0, invalidateErrorsOutside = 0;
    {
      const std::size_t n = std::min(sh_.errorCount.load(), kMaxErrors);
      for (std::size_t i = 0; i < n; ++i) {
        const ErrorEvent& e = sh_.errors[i];
        errors += e.invalidate == 0 ? 1 : 0;
        if (windowOf(e.ns, e.ns) < 0) {
          ++(e.invalidate == 0 ? errorsOutside : invalidateErrorsOutside);
        }
      }
    }
    Slot total;
    const std::size_t slots = std::min(sh_.slotCount.load(), kMaxSlots);
    for (std::size_t i = 0; i < slots; ++i) {
      const Slot& s = sh_.slots[i];
      total.hits += s.hits.load();
      total.misses += s.misses.load();
      total.loads += s.loads.load();
      total.leaseWaits += s.leaseWaits.load();
      total.waitTimeouts += s.waitTimeouts.load();
      total.coalesced += s.coalesced.load();
      total.redisErrors += s.redisErrors.load();
      total.fencedWrites += s.fencedWrites.load();
      total.breakerBypasses += s.breakerBypasses.load();
      total.refreshes += s.refreshes.load();
    }
    const auto u = [](const std::atomic<std::uint64_t>& a) { return std::to_string(a.load()); };
    std::string faults;
    for (int f = 0; f < static_cast<int>(Fault::Count); ++f) {
      if (injected_[f] > 0) {
        faults += (faults.empty() ? "" : ", ") + std::to_string(injected_[f]) + " x " +
                  faultName(static_cast<Fault>(f));
      }
    }
    std::printf("\n== chaos run: %.0f s, %d processes x (%d readers + %d writers), %s; %d "
                "invalidated keys, %d expiring keys (TTL %d ms); loader %d ms; commandTimeout "
                "%d ms, lockTtl %d ms, waitBudget %d ms, xfetchBeta %g\n",
                static_cast<double>(runNs_) / 1e9, cfg_.processes, cfg_.readers, cfg_.writers,
                cfg_.cachePerThread ? "a CacheAside per thread" : "one CacheAside per process",
                cfg_.keys, cfg_.expiringKeys, cfg_.expiringTtlMs, cfg_.loadMs,
                cfg_.commandTimeoutMs, cfg_.lockTtlMs, cfg_.waitBudgetMs, cfg_.xfetchBeta);
    std::printf("== faults: %s%s (skipped %d); a fault's window lasts until %s after it ends\n",
                faults.empty() ? "none" : faults.c_str(), "", skipped_, ms(aftermath()).c_str());
    std::printf("\n| measure | value | target |\n|---|---|---|\n");
    std::printf("| getOrLoad calls | %s | |\n", u(sh_.reads).c_str());
    std::printf("| failed calls (threw, or a value of another key) | %s (%s wrong values) | 0 "
                "(fail-open) |\n",
                u(sh_.failedReads).c_str(), u(sh_.wrongValues).c_str());
    std::printf("| stale reads: older than a write whose invalidate returned before the read "
                "began | %s | 0 |\n",
                u(sh_.staleReads).c_str());
    std::printf("| stale reads by cause: coalesced onto a getOrLoad in flight; own hit; own load | "
                "%s; %s; %s | 0 |\n",
                u(sh_.staleByCause[0]).c_str(), u(sh_.staleByCause[1]).c_str(),
                u(sh_.staleByCause[2]).c_str());
    std::printf("| writes; invalidate calls that threw (documented when Redis fails), outside "
                "fault windows | %s; %s, %zu outside | 0 outside |\n",
                u(sh_.writes).c_str(), u(sh_.invalidateErrors).c_str(), invalidateErrorsOutside);
    std::printf("| loads per key per invalidation, outside fault windows | %s | 1 |\n",
                groupsText(written).c_str());
    std::printf("| loads per key per TTL expiry, outside fault windows | %s | 1 |\n",
                groupsText(expiring).c_str());
    std::printf("| loads inside fault windows; while an invalidate of the key was in flight | %zu; "
                "%zu | reported |\n",
                written.inWindows + expiring.inWindows,
                written.duringInvalidate + expiring.duringInvalidate);
    std::printf(
        "| slowest getOrLoad / bound | %s / %s = %s (%s) | <= 1 |\n",
        ms(sh_.maxReadNs.load()).c_str(), ms(readBound).c_str(),
        ratio(static_cast<double>(sh_.maxReadNs.load()), static_cast<double>(readBound)).c_str(),
        slowestWhere.c_str());
    std::printf("| slowest getOrLoad outside fault windows / bound | %s / %s | <= 1 |\n",
                orUnder(slowestOutside).c_str(), ms(readBound).c_str());
    std::printf(
        "| slowest invalidate / bound (outside windows: %s) | %s / %s = %s | <= 1 |\n",
        orUnder(slowestInvOutside).c_str(), ms(sh_.maxInvalidateNs.load()).c_str(),
        ms(invalidateBound).c_str(),
        ratio(static_cast<double>(sh_.maxInvalidateNs.load()), static_cast<double>(invalidateBound))
            .c_str());
    std::printf("| calls over their bound; still over it less the time their process was stalled "
                "| %zu; %zu | 0 |\n",
                overBound, overBoundUnstalled);
    std::printf("| unrenewed leases outside fault windows (monitor, %llu samples); more while a "
                "worker was stalled | %zu; %zu | 0 |\n",
                static_cast<unsigned long long>(sh_.monitorSamples.load()), orphansOutside,
                orphansStalled);
    {
      const std::size_t n = std::min(sh_.stallCount.load(), kMaxStalls);
      std::int64_t longest = 0;
      for (std::size_t i = 0; i < n; ++i) {
        longest = std::max(longest, sh_.stalls[i].endNs - sh_.stalls[i].startNs);
      }
      std::printf("| scheduler stalls >= 50 ms seen by the workers' canary threads; longest | "
                  "%zu; %s | (the machine, not the cache) |\n",
                  n, ms(longest).c_str());
    }
    std::printf("| Redis errors reported (onEvent) outside fault windows (of %zu) | %zu | 0 |\n",
                errors, errorsOutside);
    std::printf("| loader errors (the source failed: not the cache) | %s | 0 |\n",
                u(sh_.loaderErrors).c_str());
    std::printf("| worker crashes (not killed by the schedule) | %d | 0 |\n", crashes_);
    std::printf("\nbounds: getOrLoad = one Redis fault (poolWait %d + connect %d + command %d "
                "ms) + waitBudget %d + pollMax %d + load %d + slack %d ms; invalidate = one "
                "Redis fault + slack\n",
                cfg_.poolWaitMs, cfg_.connectTimeoutMs, cfg_.commandTimeoutMs, cfg_.waitBudgetMs,
                cfg_.pollMaxMs, cfg_.loadMs, cfg_.slackMs);
    std::printf("\n| fault | injected | getOrLoad calls >= %d ms in its windows | slowest | "
                "unrenewed leases (lease TTL < %lld ms) |\n|---|---|---|---|---|\n",
                cfg_.slowMs, static_cast<long long>(orphanThresholdMs()));
    for (int f = 0; f < static_cast<int>(Fault::Count); ++f) {
      std::printf("| %s | %d | %zu | %s | %zu |\n", faultName(static_cast<Fault>(f)), injected_[f],
                  perFaultSlowCalls[f], orUnder(perFaultSlowest[f]).c_str(), orphansPerFault[f]);
    }
    std::printf("\ncache stats (all workers): hits %llu, misses %llu, loads %llu, leaseWaits %llu, "
                "waitTimeouts %llu, coalesced %llu, redisErrors %llu, fencedWrites %llu, "
                "breakerBypasses %llu, refreshes %llu\n",
                static_cast<unsigned long long>(total.hits.load()),
                static_cast<unsigned long long>(total.misses.load()),
                static_cast<unsigned long long>(total.loads.load()),
                static_cast<unsigned long long>(total.leaseWaits.load()),
                static_cast<unsigned long long>(total.waitTimeouts.load()),
                static_cast<unsigned long long>(total.coalesced.load()),
                static_cast<unsigned long long>(total.redisErrors.load()),
                static_cast<unsigned long long>(total.fencedWrites.load()),
                static_cast<unsigned long long>(total.breakerBypasses.load()),
                static_cast<unsigned long long>(total.refreshes.load()));
    for (const auto* g : {&written, &expiring}) {
      for (const auto& w : g->worst) {
        std::printf("extra loads outside fault windows: %s\n", w.c_str());
      }
    }
    for (const auto& text : overBoundText) {
      std::printf("over its bound: %s\n", text.c_str());
    }
    const std::size_t nstale = std::min(sh_.staleDetailCount.load(), kMaxStaleDetails);
    static const char* const kCause[] = {"coalesced onto a getOrLoad in flight in its instance",
                                         "its own lookup hit", "its own load"};
    for (std::size_t i = 0; i < nstale; ++i) {
      const StaleDetail& s = sh_.staleDetails[i];
      const int w = windowOf(s.startNs, s.endNs);
      std::printf("stale read: key %s got version %lld, bound %lld, t=%.3f s, took %s, pid %d, "
                  "%s, %s\n",
                  keyName(cfg_, s.key).c_str(), static_cast<long long>(s.got),
                  static_cast<long long>(s.bound), static_cast<double>(s.startNs - start_) / 1e9,
                  ms(s.endNs - s.startNs).c_str(), s.pid, kCause[s.cause],
                  w < 0 ? "outside fault windows" : faultName(sh_.windows[w].fault));
    }
    bool pass = sh_.failedReads.load() == 0 && sh_.staleReads.load() == 0 && crashes_ == 0;
    if (cfg_.strict) {
      pass = pass && overBound == 0 && written.groupsOverOne == 0 && expiring.groupsOverOne == 0;
    }
    std::printf("\n== %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
  }

  const Config& cfg_;
  Shared& sh_;
  std::mt19937_64 rng_;
  std::unique_ptr<RedisProcess> source_;
  std::unique_ptr<RedisProcess> cache_;
  std::vector<WorkerProc> workers_;
  pid_t monitor_ = -1;
  std::int64_t start_ = 0;
  std::int64_t hardEnd_ = 0;
  std::int64_t runNs_ = 0;
  int injected_[static_cast<int>(Fault::Count)] = {};
  int skipped_ = 0;
  int crashes_ = 0;
};

} // namespace
} // namespace chaos

int main(int argc, char** argv) {
  const chaos::Config cfg = chaos::parse(argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  void* mem = ::mmap(nullptr, sizeof(chaos::Shared), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    std::perror("chaos: mmap");
    return 2;
  }
  auto* shared = new (mem) chaos::Shared();
  try {
    chaos::Orchestrator orchestrator(cfg, *shared);
    return orchestrator.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chaos: %s\n", e.what());
    return 2;
  }
}
