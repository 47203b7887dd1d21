# Provides the imported targets PkgConfig::CACHEASIDE_LZ4 and PkgConfig::CACHEASIDE_ZSTD where
# liblz4 and libzstd are installed with pkg-config metadata (Debian: liblz4-dev, libzstd-dev).
# Without them, only cacheaside::lz4 and cacheaside::zstd are missing.
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  if(NOT TARGET PkgConfig::CACHEASIDE_LZ4)
    pkg_check_modules(CACHEASIDE_LZ4 QUIET IMPORTED_TARGET GLOBAL liblz4)
  endif()
  if(NOT TARGET PkgConfig::CACHEASIDE_ZSTD)
    pkg_check_modules(CACHEASIDE_ZSTD QUIET IMPORTED_TARGET GLOBAL libzstd)
  endif()
endif()
