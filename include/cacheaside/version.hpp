#pragma once
/// \file version.hpp
/// The library version.

/// Major version.
#define CACHEASIDE_VERSION_MAJOR 0
/// Minor version.
#define CACHEASIDE_VERSION_MINOR 1
/// Patch version.
#define CACHEASIDE_VERSION_PATCH 0
