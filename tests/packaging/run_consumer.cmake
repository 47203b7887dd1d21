# cmake -DMODE=find_package|add_subdirectory|fetch_content -DSOURCE_DIR=... -DWORK_DIR=...
#       -DCONSUMER_DIR=... -DCXX=... -DGENERATOR=... [-DPREFIX_PATH=dir:dir...]
#       [-DEXPECTED_HIREDIS=x.y.z] -P run_consumer.cmake
file(REMOVE_RECURSE "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()

# The suite's prefix path reaches every configure below (and pkg-config) through the
# environment, where a path list is one ':'-separated value.
if(PREFIX_PATH)
  set(ENV{CMAKE_PREFIX_PATH} "${PREFIX_PATH}")
endif()

set(consumer_args -DCACHEASIDE_MODE=${MODE} -DCACHEASIDE_SOURCE_DIR=${SOURCE_DIR})
if(MODE STREQUAL "find_package")
  run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}/cacheaside-build" -G "${GENERATOR}"
      -DCMAKE_CXX_COMPILER=${CXX} -DCACHEASIDE_BUILD_TESTS=OFF -DCACHEASIDE_BUILD_EXAMPLES=OFF
      -DCACHEASIDE_BUILD_BENCHMARKS=OFF)
  run("${CMAKE_COMMAND}" --install "${WORK_DIR}/cacheaside-build" --prefix "${WORK_DIR}/prefix")
  list(APPEND consumer_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
endif()

run("${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${WORK_DIR}/consumer-build" -G "${GENERATOR}"
    -DCMAKE_CXX_COMPILER=${CXX} ${consumer_args})
run("${CMAKE_COMMAND}" --build "${WORK_DIR}/consumer-build")
execute_process(COMMAND "${WORK_DIR}/consumer-build/consumer" RESULT_VARIABLE rc
  OUTPUT_VARIABLE output)
message(STATUS "${output}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the consumer failed (${rc})")
endif()
if(EXPECTED_HIREDIS AND NOT output MATCHES "hiredis ${EXPECTED_HIREDIS},")
  message(FATAL_ERROR "the consumer used another hiredis than the suite's ${EXPECTED_HIREDIS}")
endif()
