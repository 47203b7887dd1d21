# Provides the imported target hiredis::hiredis when hiredis is installed.
# hiredis 1.x installs a CMake config with that target; Debian 12's hiredis 0.14 ships only
# pkg-config metadata, so fall back to that. Without hiredis, only cacheaside::hiredis is missing.
if(NOT TARGET hiredis::hiredis)
  find_package(hiredis CONFIG QUIET)
endif()
if(NOT TARGET hiredis::hiredis)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(CACHEASIDE_HIREDIS QUIET IMPORTED_TARGET GLOBAL hiredis)
  endif()
  if(TARGET PkgConfig::CACHEASIDE_HIREDIS)
    add_library(hiredis::hiredis INTERFACE IMPORTED GLOBAL)
    set_target_properties(hiredis::hiredis PROPERTIES
      INTERFACE_LINK_LIBRARIES PkgConfig::CACHEASIDE_HIREDIS)
  endif()
endif()
