# Compiles each public header alone (included twice: include guards; C++17 with -fopenmp, so the
# OpenMP pragmas are compiled too) and instantiate_all.cpp (every entry point for float and
# double) for C++17/C++20, with and without -fopenmp, all with -Werror. The single-header units
# only prove that each header is self-contained, which the standard and OpenMP do not change;
# the template code is checked in all four configurations through instantiate_all.cpp.
# Run with cmake -P.
separate_arguments(HEADERS)
file(MAKE_DIRECTORY "${WORK_DIR}")
set(_sources "")
foreach(h ${HEADERS})
  string(MAKE_C_IDENTIFIER "${h}" _id)
  set(_src "${WORK_DIR}/${_id}.cpp")
  file(WRITE "${_src}" "#include <${h}>\n#include <${h}>\nint main() { return 0; }\n")
  list(APPEND _sources "${_src}")
endforeach()
set(_failed 0)
set(_count 0)
# mode "object": a full -O1 compile (also the warnings that need the optimiser's analyses);
# mode "syntax": -fsyntax-only, which still instantiates every template and gives every
# front-end warning, at a third of the time. One instantiate_all.cpp configuration is compiled
# fully, the other three and the single-header units (which instantiate nothing) for syntax.
function(compile_unit src std omp mode)
  if(mode STREQUAL "object")
    set(_how -O1 -c "${src}" -o "${WORK_DIR}/out.o")
  else()
    set(_how -fsyntax-only "${src}")
  endif()
  execute_process(
    COMMAND "${CXX}" -std=c++${std} ${omp} -Wall -Wextra -Wpedantic -Werror
            -I "${INCLUDE_DIR}" -isystem "${EIGEN_DIR}" ${_how}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(SEND_ERROR "FAILED: ${CXX} -std=c++${std} ${omp} ${src}\n${out}${err}")
    math(EXPR _f "${_failed} + 1")
    set(_failed ${_f} PARENT_SCOPE)
  endif()
  math(EXPR _c "${_count} + 1")
  set(_count ${_c} PARENT_SCOPE)
endfunction()
foreach(src ${_sources})
  compile_unit("${src}" 17 "-fopenmp" syntax)
endforeach()
# OBJECT_COMPILE=OFF (the second compiler): every configuration for syntax only, since the
# optimiser-dependent warnings are checked once already by the first compiler's full build.
if(OBJECT_COMPILE)
  compile_unit("${INSTANTIATE}" 17 "-fopenmp" object)
else()
  compile_unit("${INSTANTIATE}" 17 "-fopenmp" syntax)
endif()
compile_unit("${INSTANTIATE}" 17 "" syntax)
compile_unit("${INSTANTIATE}" 20 "" syntax)
compile_unit("${INSTANTIATE}" 20 "-fopenmp" syntax)
if(_failed GREATER 0)
  message(FATAL_ERROR "${_failed} header compilations failed")
endif()
message(STATUS "header hygiene: ${_count} translation units compiled cleanly with ${CXX}")
