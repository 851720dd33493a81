# ctest python_install_staged: `cmake --install BUILD_DIR --component python` under DESTDIR=STAGE,
# then import the module from STAGE/SITE with no other path (PYTHONPATH cleared).
file(REMOVE_RECURSE "${STAGE}")
execute_process(COMMAND "${CMAKE_COMMAND}" -E env "DESTDIR=${STAGE}"
                        "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --component python
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install --component python failed (${rc})")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -E env "PYTHONPATH=${STAGE}${SITE}"
                        "${PYTHON}" -s -c "import attnx, numpy as np; x = np.ones((4, 2)); assert np.allclose(attnx.exact_attention(x, x, x), 1); print('imported attnx from', attnx.__file__)"
                WORKING_DIRECTORY "${STAGE}"  # not the build tree, which holds the module too
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "importing the staged module failed (${rc})")
endif()
