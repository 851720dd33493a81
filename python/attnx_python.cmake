# Included by the top-level CMakeLists.txt before option(ATTNX_BUILD_PYTHON): finds the Python
# the module is built for and pybind11, and sets ATTNX_PYTHON_FOUND (the option's default).
# The interpreter is Debian's /usr/bin/python3 (it has python3-numpy and python3-pytest) unless
# -DPython3_EXECUTABLE=... names another; a python3 earlier on PATH (pyenv, a venv) is not taken
# by surprise.
set(ATTNX_PYTHON_FOUND OFF)
if(NOT DEFINED Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
  set(Python3_EXECUTABLE /usr/bin/python3 CACHE FILEPATH "The Python interpreter the attnx module is built for")
endif()
find_package(Python3 COMPONENTS Interpreter Development.Module QUIET)
if(Python3_FOUND)
  find_package(pybind11 2.6 CONFIG QUIET)  # Debian: pybind11-dev
  if(pybind11_FOUND)
    set(ATTNX_PYTHON_FOUND ON)
  endif()
endif()
if(NOT ATTNX_PYTHON_FOUND)
  message(STATUS "attnx: Python module not built (needs python3-dev and pybind11-dev; see scripts/deps)")
endif()
