#pragma once
/// \file metrics/prometheus.hpp
/// A cache's counters in the Prometheus text exposition format, generated from the one counter
/// list (stats.hpp), so that no counter can be left out.

#include <cacheaside/stats.hpp>

#include <cctype>
#include <string>
#include <string_view>

namespace cacheaside::metrics {

/// The content type of prometheusText().
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

/// The metric name of a counter: cacheaside_<name in snake case>_total.
inline std::string metricName(std::string_view counter) {
  std::string out = "cacheaside_";
  for (const char c : counter) {
    if (std::isupper(static_cast<unsigned char>(c)) != 0) {
      out += '_';
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      out += c;
    }
  }
  return out + "_total";
}

/// value escaped for a Prometheus label value (backslash, double quote, newline).
inline std::string labelValue(std::string_view value) {
  std::string label;
  for (const char c : value) {
    if (c == '\\' || c == '"') {
      label += '\\';
      label += c;
    } else if (c == '\n') {
      label += "\\n";
    } else {
      label += c;
    }
  }
  return label;
}

/// Every counter of stats as a Prometheus counter with HELP and TYPE lines, labelled
/// cache="<cacheName>" (escaped as the format requires).
inline std::string prometheusText(const Stats& stats, std::string_view cacheName) {
  const std::string label = labelValue(cacheName);
  std::string out;
  for (const CounterInfo& info : counterList()) {
    const std::string metric = metricName(info.name);
    out += "# HELP " + metric + ' ' + info.help + ".\n";
    out += "# TYPE " + metric + " counter\n";
    out += metric + "{cache=\"" + label + "\"} " + std::to_string(stats.*info.field) + '\n';
  }
  return out;
}

} // namespace cacheaside::metrics
