#pragma once
/// \file flow/tags.hpp
/// Tag checks shared by the flows. A call that names tags reads each tag's generation in the
/// same pipeline as its lookup, stamps the generations it read before loading into the record
/// it writes, and treats a record whose stamp differs from the current generations as
/// invalidated. Calls without tags skip all of it.

#include <cacheaside/client/redis_client.hpp>
#include <cacheaside/codec/envelope.hpp>
#include <cacheaside/flow/step.hpp>
#include <cacheaside/store/store.hpp>

#include <cstddef>
#include <string>
#include <vector>

namespace cacheaside::flow {

/// Appends a read of each tag's generation to commands.
inline void appendTagReads(const Settings& settings, std::vector<Command>& commands) {
  for (const std::string& key : settings.tagKeys) {
    commands.push_back(store::Store::readTag(key));
  }
}

/// Reads the generations from the last replies (those of appendTagReads) into generations. A
/// failed read counts as a Redis error and reads as a generation no tag ever has, so that a
/// record checked or stamped with it is reloaded by the next reader.
inline void readGenerations(const Settings& settings, const std::vector<Reply>& replies,
                            std::vector<std::string>& generations, Sink& sink) {
  const std::size_t n = settings.tagKeys.size();
  generations.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::optional<std::string_view> g =
        replies.size() >= n ? store::Store::parseTag(replies[replies.size() - n + i])
                            : std::nullopt;
    if (!g) {
      sink.count(Counter::redisErrors);
    }
    generations[i] = g ? std::string(*g) : std::string(store::Store::kUnknownGeneration);
  }
}

/// Whether record carries, for every tag of the call, the generation read now.
inline bool carriesGenerations(const Envelope& record, const Settings& settings,
                               const std::vector<std::string>& generations) {
  const auto field = envelope::findField(record.extensions, envelope::kTagsField);
  if (!field) {
    return false;
  }
  for (std::size_t i = 0; i < settings.tags.size() && i < generations.size(); ++i) {
    const auto g = envelope::tagGeneration(*field, settings.tags[i]);
    if (!g || *g != generations[i] || *g == store::Store::kUnknownGeneration) {
      return false;
    }
  }
  return true;
}

/// Stamps record (a Value or Negative record) with the call's tags and the generations read
/// before its load.
inline void stampGenerations(std::string& record, const Settings& settings,
                             const std::vector<std::string>& generations) {
  std::string tags;
  for (std::size_t i = 0; i < settings.tags.size() && i < generations.size(); ++i) {
    envelope::appendTag(tags, settings.tags[i], generations[i]);
  }
  std::string block;
  envelope::appendField(block, envelope::kTagsField, tags);
  envelope::addExtensions(record, block);
}

} // namespace cacheaside::flow
