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

// Finds the "\r\n" that ends the line of the element at p (its type byte, then its text).
inline Parsed lineEnd(const char* p, const char* end, const char*& cr) {
  if (p == end) {
    return Parsed::NeedMore;
  }
  cr = static_cast<const char*>(std::memchr(p + 1, '\r', static_cast<std::size_t>(end - p - 1)));
  if (cr == nullptr || cr + 1 == end) {
    return Parsed::NeedMore;
  }
  return cr[1] == '\n' ? Parsed::Complete : Parsed::Invalid;
}

inline Parsed parse(const char*& cursor, const char* end, Reply& out, int depth) {
  const char* p = cursor;
  const char* cr = nullptr;
  if (const Parsed line = lineEnd(p, end, cr); line != Parsed::Complete) {
    return line;
  }
  const char type = *p++;
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

/// Where scanReply() got in a reply that arrives in pieces, so that it resumes there.
struct ReplyScan {
  std::size_t at = 0; ///< bytes of the reply walked (whole elements only)
  int depth = 0;      ///< the level of the element to walk next (0: the reply itself)
  long long left[kMaxReplyDepth + 1] = {1}; ///< elements still to walk at each level
};

/// Checks, without copying, whether [begin, end) starts with a whole RESP2 reply, resuming from
/// scan (fresh for each reply, kept across calls with the same begin and a later end): Complete,
/// NeedMore or Invalid as parseReply() would answer. A reply arriving in many pieces is walked
/// once in all, where parsing it again after each piece would copy its strings again each time.
inline Parsed scanReply(const char* begin, const char* end, ReplyScan& scan) {
  const char* p = begin + scan.at;
  while (scan.depth >= 0) {
    if (scan.left[scan.depth] == 0) {
      --scan.depth;
      continue;
    }
    const char* cr = nullptr;
    if (const Parsed line = resp::lineEnd(p, end, cr); line != Parsed::Complete) {
      return line;
    }
    const char type = *p;
    const char* next = cr + 2;
    long long n = 0;
    switch (type) {
    case '+':
    case '-':
      break;
    case ':':
      if (resp::integer(p + 1, cr, n) != Parsed::Complete) {
        return Parsed::Invalid;
      }
      break;
    case '$':
      if (resp::integer(p + 1, cr, n) != Parsed::Complete || n < -1 || n > kMaxReplyLength) {
        return Parsed::Invalid;
      }
      if (n >= 0) {
        if (end - next < n + 2) {
          return Parsed::NeedMore;
        }
        if (next[n] != '\r' || next[n + 1] != '\n') {
          return Parsed::Invalid;
        }
        next += n + 2;
      }
      break;
    case '*':
      if (resp::integer(p + 1, cr, n) != Parsed::Complete || n < -1 || n > kMaxReplyLength ||
          scan.depth >= kMaxReplyDepth) {
        return Parsed::Invalid;
      }
      if (n > 0) {
        --scan.left[scan.depth];
        scan.left[++scan.depth] = n;
        p = next;
        scan.at = static_cast<std::size_t>(p - begin);
        continue;
      }
      break;
    default:
      return Parsed::Invalid;
    }
    --scan.left[scan.depth];
    p = next;
    scan.at = static_cast<std::size_t>(p - begin);
  }
  return Parsed::Complete;
}

/// Parses one RESP2 reply from [cursor, end) into out and, when Complete, moves cursor past it.
/// On NeedMore, call again from the same cursor once more bytes follow.
inline Parsed parseReply(const char*& cursor, const char* end, Reply& out) {
  return resp::parse(cursor, end, out, 0);
}

} // namespace cacheaside::detail
