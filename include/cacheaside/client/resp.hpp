#pragma once
/// \file client/resp.hpp
/// A RESP2 reply parser for clients that read their sockets themselves: it parses from the bytes
/// received straight into Reply, so a string is copied once (hiredis's reader copies it into its
/// buffer, then into its reply object, and Reply needs a third copy). Not part of the public API.

#include <cacheaside/client/redis_client.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace cacheaside::detail {

/// How far parseReply() got.
enum class Parsed {
  Complete, ///< one whole reply was parsed; the cursor is past it
  NeedMore, ///< the bytes end inside the reply; the cursor did not move
  Invalid,  ///< the bytes are not RESP2 (or nest deeper than kMaxReplyDepth)
};

/// The deepest nesting of arrays parseReply() accepts (Redis sends at most 3 here).
inline constexpr int kMaxReplyDepth = 8;
/// The longest bulk string or array parseReply() accepts (Redis's proto-max-bulk-len is 512 MB
/// by default): a corrupt length is Invalid rather than a wait for bytes that never come.
inline constexpr long long kMaxReplyLength = 1LL << 32;

namespace resp {
// Parses the line from p up to "\r\n" as a decimal integer into value.
inline Parsed integer(const char* p, const char* cr, long long& value) {
  bool negative = false;
  if (p < cr && *p == '-') {
    negative = true;
    ++p;
  }
  if (p == cr || cr - p > 19) {
    return Parsed::Invalid;
  }
  unsigned long long v = 0;
  for (; p < cr; ++p) {
    if (*p < '0' || *p > '9') {
      return Parsed::Invalid;
    }
    v = v * 10 + static_cast<unsigned long long>(*p - '0');
  }
  const unsigned long long limit = negative ? 9223372036854775808ULL : 9223372036854775807ULL;
  if (v > limit) {
    return Parsed::Invalid;
  }
  value = negative ? static_cast<long long>(0ULL - v) : static_cast<long long>(v);
  return Parsed::Complete;
}

inline Parsed parse(const char*& cursor, const char* end, Reply& out, int depth) {
  const char* p = cursor;
  if (p == end) {
    return Parsed::NeedMore;
  }
  const char type = *p++;
  const auto* cr =
      static_cast<const char*>(std::memchr(p, '\r', static_cast<std::size_t>(end - p)));
  if (cr == nullptr || cr + 1 == end) {
    return Parsed::NeedMore;
  }
  if (cr[1] != '\n') {
    return Parsed::Invalid;
  }
  const char* next = cr + 2;
  long long n = 0;
  switch (type) {
  case '+':
  case '-':
    out.type = type == '+' ? Reply::Type::Status : Reply::Type::Error;
    out.str.assign(p, cr);
    break;
  case ':':
    if (integer(p, cr, out.integer) != Parsed::Complete) {
      return Parsed::Invalid;
    }
    out.type = Reply::Type::Integer;
    break;
  case '$':
    if (integer(p, cr, n) != Parsed::Complete || n < -1 || n > kMaxReplyLength) {
      return Parsed::Invalid;
    }
    if (n == -1) {
      out.type = Reply::Type::Nil;
      break;
    }
    if (end - next < n + 2) {
      return Parsed::NeedMore;
    }
    if (next[n] != '\r' || next[n + 1] != '\n') {
      return Parsed::Invalid;
    }
    out.type = Reply::Type::String;
    out.str.assign(next, static_cast<std::size_t>(n));
    next += n + 2;
    break;
  case '*':
    if (integer(p, cr, n) != Parsed::Complete || n < -1 || n > kMaxReplyLength ||
        depth >= kMaxReplyDepth) {
      return Parsed::Invalid;
    }
    if (n == -1) {
      out.type = Reply::Type::Nil;
      break;
    }
    out.type = Reply::Type::Array;
    out.elements.clear();
    out.elements.reserve(static_cast<std::size_t>(std::min(n, 1024LL)));
    for (long long i = 0; i < n; ++i) {
      out.elements.emplace_back();
      const Parsed element = parse(next, end, out.elements.back(), depth + 1);
      if (element != Parsed::Complete) {
        return element;
      }
    }
    break;
  default:
    return Parsed::Invalid;
  }
  cursor = next;
  return Parsed::Complete;
}
} // namespace resp

/// Parses one RESP2 reply from [cursor, end) into out and, when Complete, moves cursor past it.
/// On NeedMore, call again from the same cursor once more bytes follow.
inline Parsed parseReply(const char*& cursor, const char* end, Reply& out) {
  return resp::parse(cursor, end, out, 0);
}

} // namespace cacheaside::detail
