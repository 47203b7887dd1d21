#pragma once
// Catch2 v3 and v2 (Debian 12 ships 2.13) behind one include.
#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers.hpp> // CHECK_THROWS_WITH, which v2 has in catch.hpp
#else
#include <catch2/catch.hpp>
#endif
