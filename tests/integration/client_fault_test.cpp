// Connection hygiene under a failure in the middle of a call. A separate test program, because it
// replaces the global operator new to make one chosen allocation fail: the std::bad_alloc that a
// real out-of-memory would raise while a reply is converted, with replies still unread.

#include "support/catch.hpp"
#include "support/fake_server.hpp"
#include "support/test_redis.hpp"

#include <cacheaside/client/hiredis.hpp>

#include <cstddef>
#include <cstdlib>
#include <new>
#include <string>

namespace {
// The next operator new of exactly this many bytes on this thread throws; 0 for none.
thread_local std::size_t failAllocationOfSize = 0;
} // namespace

// Every replaceable form but the aligned ones, so that no allocation made here is freed by a
// runtime's own operator delete (or the reverse): sanitizers check that they match.
void* operator new(std::size_t size) {
  if (size != 0 && size == failAllocationOfSize) {
    failAllocationOfSize = 0;
    throw std::bad_alloc();
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) {
    return p;
  }
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) {
  return ::operator new(size);
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return ::operator new(size, std::nothrow);
}

// GCC sees operator new's malloc through inlining and would call the matching free a mismatch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

TEST_CASE("a call that throws between reading replies does not return its connection to the pool") {
  // The first connection answers a two-command pipeline with both replies in one write, so both
  // sit in the client's read buffer when the first one's conversion fails; later connections
  // answer "fresh". A reused first connection would hand its leftover "+stale" to the next call.
  const std::string payload(4000, 'x');
  testsupport::FakeServer server([&](testsupport::FakeServer::Connection& c) {
    if (c.receive().empty()) {
      return;
    }
    if (c.index() == 0) {
      c.send(testsupport::bulk(payload) + "+stale\r\n");
      c.holdOpen();
      return;
    }
    do {
      c.send("+fresh\r\n");
    } while (!c.receive().empty());
  });
  auto o = testsupport::clientOptions(server.host(), server.port());
  o.poolSize = 1;
  cacheaside::HiredisClient client(o);
  failAllocationOfSize = payload.size() + 1; // the std::string that receives the payload
  CHECK_THROWS_AS(client.pipeline({{"a", {"GET", "a"}}, {"b", {"GET", "b"}}}), std::bad_alloc);
  failAllocationOfSize = 0;
  CHECK(testsupport::cmd(client, {"ECHO", "fresh"}).str == "fresh");
  CHECK(server.accepted() == 2);
}
