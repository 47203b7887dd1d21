#pragma once
/// \file near/metrics.hpp
/// A cache's near-tier counters (CacheAside::nearStats()) in the Prometheus text exposition
/// format, next to metrics/prometheus.hpp's: near hits, installs, refused installs, evictions,
/// invalidations received, flushes, reads sent to Redis for a silent feed, entries and bytes.

#include <cacheaside/metrics/prometheus.hpp>
#include <cacheaside/near/tier.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace cacheaside::metrics {

/// nearStats as Prometheus counters and gauges with HELP and TYPE lines, labelled
/// cache="<cacheName>" (escaped as the format requires).
inline std::string nearPrometheusText(const NearStats& nearStats, std::string_view cacheName) {
  const std::string label = labelValue(cacheName);
  std::string out;
  const auto add = [&](const char* name, const char* type, const char* help, std::uint64_t v) {
    const std::string metric = std::string("cacheaside_near_") + name;
    out += "# HELP " + metric + ' ' + help + ".\n";
    out += "# TYPE " + metric + ' ' + type + '\n';
    out += metric + "{cache=\"" + label + "\"} " + std::to_string(v) + '\n';
  };
  add("hits_total", "counter", "Reads served from the near cache", nearStats.hits);
  add("installs_total", "counter", "Values installed in the near cache after a Redis hit",
      nearStats.installs);
  add("refused_total", "counter", "Installs refused because an invalidation overtook the read",
      nearStats.refused);
  add("evictions_total", "counter", "Near entries evicted to stay within the bounds",
      nearStats.evictions);
  add("invalidations_total", "counter", "Invalidations received from the feed",
      nearStats.invalidations);
  add("flushes_total", "counter", "Near cache flushes (FLUSHALL, feed lost)", nearStats.flushes);
  add("silent_misses_total", "counter",
      "Reads sent to Redis because the feed had not confirmed within maxFeedSilence",
      nearStats.silentMisses);
  add("entries", "gauge", "Entries in the near cache", nearStats.entries);
  add("bytes", "gauge", "Bytes charged to the near cache", nearStats.bytes);
  add("bypassed", "gauge", "1 while the near cache is bypassed (feed down)",
      nearStats.bypassed ? 1 : 0);
  return out;
}

} // namespace cacheaside::metrics
