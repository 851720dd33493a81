# Installing attnx needs only Eigen: configures the source tree as the README's install command
# does, with GoogleTest, nlohmann-json and Google Benchmark hidden (CMAKE_DISABLE_FIND_PACKAGE_*),
# checks that tests and benchmarks are skipped with a message saying why, and installs into
# STAGE (which consumer_find_package then uses).
#   cmake -DSOURCE_DIR=... -DBINARY_DIR=... -DSTAGE=... -DGENERATOR=... -DCXX=... -P install_minimal.cmake
foreach(_v SOURCE_DIR BINARY_DIR STAGE GENERATOR CXX)
  if(NOT DEFINED ${_v})
    message(FATAL_ERROR "install_minimal.cmake: -D${_v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${BINARY_DIR}" "${STAGE}")

execute_process(
  COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release
          "-DCMAKE_CXX_COMPILER=${CXX}"
          -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON
          -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON
  RESULT_VARIABLE _code OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
message("configure (exit status ${_code}):\n${_out}${_err}")
if(NOT _code EQUAL 0)
  message(FATAL_ERROR "configuring with only Eigen failed")
endif()
foreach(_expect "attnx: tests skipped \\(GoogleTest and nlohmann-json not found\\)"
                "attnx: benchmarks skipped \\(Google Benchmark not found\\)"
                "tests OFF, benchmarks OFF, examples ON")
  if(NOT "${_out}" MATCHES "${_expect}")
    message(FATAL_ERROR "the configure output does not say: ${_expect}")
  endif()
endforeach()

execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BINARY_DIR}" --prefix "${STAGE}"
                RESULT_VARIABLE _code OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
message("install (exit status ${_code}):\n${_out}${_err}")
if(NOT _code EQUAL 0)
  message(FATAL_ERROR "cmake --install failed")
endif()
foreach(_f include/attnx/attnx.hpp include/attnx/mechanisms.hpp share/cmake/attnx/attnxConfig.cmake
           share/cmake/attnx/attnxTargets.cmake)
  if(NOT EXISTS "${STAGE}/${_f}")
    message(FATAL_ERROR "the install has no ${_f}")
  endif()
endforeach()
file(REMOVE_RECURSE "${BINARY_DIR}")
message("installed with only Eigen into ${STAGE}")
