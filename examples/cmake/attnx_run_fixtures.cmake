# Derived input files for the attnx_run tests (run as the setup test attnx_run_fixtures):
#   cmake -DFIXTURE=<npy_fixture> -DRUN=<attnx_run> -DDATA=<tests/data> -DWORK=<dir> -P attnx_run_fixtures.cmake
set(tiny "${DATA}/tiny_n64_d32_m8")
file(MAKE_DIRECTORY "${WORK}")
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "failed (${code}): ${ARGN}\n${out}${err}")
  endif()
endfunction()
foreach(x q k v)
  step("${FIXTURE}" convert "${tiny}/${x}.npy" "${WORK}/${x}_f64_F.npy" "<f8" F)  # float64, Fortran order
  step("${FIXTURE}" convert "${tiny}/${x}.npy" "${WORK}/${x}_be.npy" ">f4" C)     # big-endian float32
endforeach()
step("${FIXTURE}" truncate "${tiny}/q.npy" "${WORK}/q_truncated.npy" 100)          # 100 bytes short
step("${FIXTURE}" convert "${tiny}/q.npy" "${WORK}/q_int64.npy" "<i8" C)           # a wrong dtype
# Key padding: the last 16 of 64 keys padded equals attention on the first 48 keys alone.
step("${FIXTURE}" mask "${WORK}/mask_last16.npy" 64 16 "|b1")
step("${FIXTURE}" mask "${WORK}/mask_len48.npy" 48 4 "|u1")                      # wrong length for n = 64
step("${FIXTURE}" rows "${tiny}/k.npy" "${WORK}/k_first48.npy" 0 48)
step("${FIXTURE}" rows "${tiny}/v.npy" "${WORK}/v_first48.npy" 0 48)
step("${RUN}" --method exact-materialized --q "${tiny}/q.npy" --k "${WORK}/k_first48.npy"
     --v "${WORK}/v_first48.npy" --dtype float64 --out "${WORK}/exact_first48.npy")
# Causal exact attention, the reference of the causal block-sparse run.
step("${RUN}" --method exact --causal --q "${tiny}/q.npy" --k "${tiny}/k.npy" --v "${tiny}/v.npy" --dtype float64
     --out "${WORK}/exact_causal.npy")
