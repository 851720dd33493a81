# Compiles each public header alone (included twice: include guards; C++17 with -fopenmp, so the
# OpenMP pragmas are compiled too) and instantiate_all.cpp (every entry point for float and
# double) in the configurations CONFIGS names (C++17/C++20, with and without -fopenmp), all
# with -Werror. The single-header units
# only prove that each header is self-contained, which the standard and OpenMP do not change;
# the template code is checked in all four configurations through instantiate_all.cpp.
# Run with cmake -P.
separate_arguments(HEADERS)
separate_arguments(CONFIGS)
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
# CONFIGS: the instantiate_all.cpp configurations this compiler checks, "std:omp|noomp:object|syntax"
# each. With two compilers the four (C++17/20 x with/without OpenMP) are shared between them,
# each checked once (the first compiler also does the one full -O1 object compile, for the
# warnings that need the optimiser); with one compiler it checks all four.
foreach(cfg ${CONFIGS})
  string(REPLACE ":" ";" _parts "${cfg}")
  list(GET _parts 0 _std)
  list(GET _parts 1 _omp)
  list(GET _parts 2 _mode)
  if(_omp STREQUAL "omp")
    compile_unit("${INSTANTIATE}" ${_std} "-fopenmp" ${_mode})
  else()
    compile_unit("${INSTANTIATE}" ${_std} "" ${_mode})
  endif()
endforeach()
if(_failed GREATER 0)
  message(FATAL_ERROR "${_failed} header compilations failed")
endif()
message(STATUS "header hygiene: ${_count} translation units compiled cleanly with ${CXX}")
