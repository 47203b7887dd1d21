#pragma once
// Catch2 v3 and v2 (Debian 12 ships 2.13) behind one include.
#if __has_include(<catch2/catch_test_macros.hpp>)
#include <catch2/catch_test_macros.hpp>
#else
#include <catch2/catch.hpp>
#endif
