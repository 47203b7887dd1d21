// The RESP2 reply parser the hiredis client reads with (client/resp.hpp).
#include "support/catch.hpp"

#include <cacheaside/client/resp.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

using cacheaside::Reply;
using cacheaside::detail::Parsed;
using cacheaside::detail::parseReply;

namespace {
struct Result {
  Parsed parsed;
  Reply reply;
  std::size_t consumed;
};

Result parse(const std::string& bytes) {
  Result r{Parsed::Invalid, {}, 0};
  const char* cursor = bytes.data();
  r.parsed = parseReply(cursor, bytes.data() + bytes.size(), r.reply);
  r.consumed = static_cast<std::size_t>(cursor - bytes.data());
  return r;
}

bool same(const Reply& a, const Reply& b) {
  if (a.type != b.type || a.str != b.str || a.elements.size() != b.elements.size()) {
    return false;
  }
  if (a.type == Reply::Type::Integer && a.integer != b.integer) {
    return false;
  }
  for (std::size_t i = 0; i < a.elements.size(); ++i) {
    if (!same(a.elements[i], b.elements[i])) {
      return false;
    }
  }
  return true;
}

std::string encode(const Reply& r) {
  switch (r.type) {
  case Reply::Type::Nil:
    return "$-1\r\n";
  case Reply::Type::String:
    return "$" + std::to_string(r.str.size()) + "\r\n" + r.str + "\r\n";
  case Reply::Type::Status:
    return "+" + r.str + "\r\n";
  case Reply::Type::Error:
    return "-" + r.str + "\r\n";
  case Reply::Type::Integer:
    return ":" + std::to_string(r.integer) + "\r\n";
  case Reply::Type::Array: {
    std::string out = "*" + std::to_string(r.elements.size()) + "\r\n";
    for (const Reply& e : r.elements) {
      out += encode(e);
    }
    return out;
  }
  }
  return {};
}

Reply randomReply(std::mt19937& rng, int depth) {
  Reply r;
  const int kind = static_cast<int>(rng() % (depth < 3 ? 6 : 5));
  switch (kind) {
  case 0:
    r.type = Reply::Type::Nil;
    break;
  case 1: { // binary, with "\r\n" inside at times
    r.type = Reply::Type::String;
    const std::size_t n = rng() % 3 == 0 ? 0 : rng() % 300;
    for (std::size_t i = 0; i < n; ++i) {
      r.str.push_back(static_cast<char>(rng() % 256));
    }
    break;
  }
  case 2:
    r.type = Reply::Type::Status;
    r.str = "OK";
    break;
  case 3:
    r.type = Reply::Type::Error;
    r.str = "ERR something " + std::to_string(rng() % 100);
    break;
  case 4:
    r.type = Reply::Type::Integer;
    r.integer = static_cast<long long>(rng()) - static_cast<long long>(rng());
    break;
  default:
    r.type = Reply::Type::Array;
    for (std::size_t i = rng() % 5; i > 0; --i) {
      r.elements.push_back(randomReply(rng, depth + 1));
    }
    break;
  }
  return r;
}
} // namespace

TEST_CASE("each RESP2 type parses, and the cursor moves past the reply only") {
  const std::string tail = "+NEXT\r\n";
  struct Case {
    std::string bytes;
    Reply::Type type;
  };
  const std::vector<Case> cases = {
      {"+OK\r\n", Reply::Type::Status},    {"-ERR wrong\r\n", Reply::Type::Error},
      {":-42\r\n", Reply::Type::Integer},  {"$5\r\na\r\nbc\r\n", Reply::Type::String},
      {"$0\r\n\r\n", Reply::Type::String}, {"$-1\r\n", Reply::Type::Nil},
      {"*-1\r\n", Reply::Type::Nil},       {"*2\r\n$1\r\nx\r\n:7\r\n", Reply::Type::Array},
  };
  for (const Case& c : cases) {
    INFO(c.bytes);
    const Result r = parse(c.bytes + tail);
    REQUIRE(r.parsed == Parsed::Complete);
    CHECK(r.reply.type == c.type);
    CHECK(r.consumed == c.bytes.size());
  }
  CHECK(parse("$5\r\na\r\nbc\r\n").reply.str == std::string("a\r\nbc"));
  CHECK(parse(":-9223372036854775808\r\n").reply.integer == INT64_MIN);
  CHECK(parse(":9223372036854775807\r\n").reply.integer == INT64_MAX);
  const Result array = parse("*2\r\n$1\r\nx\r\n:7\r\n");
  REQUIRE(array.reply.elements.size() == 2);
  CHECK(array.reply.elements[0].str == "x");
  CHECK(array.reply.elements[1].integer == 7);
}

TEST_CASE("every proper prefix of a reply needs more bytes and leaves the cursor alone") {
  std::mt19937 rng(20261127);
  for (int round = 0; round < 200; ++round) {
    const Reply expected = randomReply(rng, 0);
    const std::string bytes = encode(expected);
    for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
      const Result r = parse(bytes.substr(0, cut));
      if (r.parsed != Parsed::NeedMore || r.consumed != 0) {
        FAIL("prefix of " << cut << " of " << bytes.size() << " bytes: not NeedMore");
      }
    }
    const Result whole = parse(bytes);
    REQUIRE(whole.parsed == Parsed::Complete);
    CHECK(whole.consumed == bytes.size());
    CHECK(same(whole.reply, expected));
  }
}

TEST_CASE("bytes that are not RESP2 are invalid, not waited for") {
  const std::vector<std::string> bad = {
      "?x\r\n",                                                       // unknown type byte
      "+OK\rX",                                                       // CR without LF
      ":12a\r\n",                                                     // not a number
      ":\r\n",                                                        // no digits
      ":-\r\n",                                                       // a sign alone
      ":9223372036854775808\r\n",                                     // overflows
      "$-2\r\n",                                                      // negative length
      "$3\r\nabcXY",                                                  // no CRLF after the bulk
      "*-5\r\n",                                                      // negative count
      "$99999999999999\r\n",                                          // longer than any reply
      "%1\r\n:1\r\n:1\r\n",                                           // RESP3 map: never asked for
      "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", // nested too deep
  };
  for (const std::string& b : bad) {
    INFO(b);
    const Result r = parse(b);
    CHECK(r.parsed == Parsed::Invalid);
    CHECK(r.consumed == 0);
  }
}

TEST_CASE("a pipeline's replies parse one after another from one buffer") {
  std::mt19937 rng(7);
  std::vector<Reply> expected;
  std::string bytes;
  for (int i = 0; i < 50; ++i) {
    expected.push_back(randomReply(rng, 0));
    bytes += encode(expected.back());
  }
  const char* cursor = bytes.data();
  const char* end = bytes.data() + bytes.size();
  for (const Reply& e : expected) {
    Reply got;
    REQUIRE(parseReply(cursor, end, got) == Parsed::Complete);
    CHECK(same(got, e));
  }
  CHECK(cursor == end);
  Reply none;
  CHECK(parseReply(cursor, end, none) == Parsed::NeedMore);
}
