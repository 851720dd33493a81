# End-to-end tests of attnx_run (included from examples/CMakeLists.txt when tests are built).
# Inputs are the conformance cases of tests/data (float32, C order); npy_fixture derives the
# float64 / Fortran-order / big-endian / truncated / wrong-dtype files and a key padding mask.
#
# Tolerances (relative Frobenius error against the stored float64 references, which were
# computed in float64 from the same float32 inputs):
#  - float32 runs: 1e-5. Rounding of a float32 evaluation is ~ c·sqrt(d)·eps32 ≈ 1e-6 at d = 32..64;
#    PyTorch float32 lands at 2e-7..1e-6 from the same references (manifest.json, f32_vs_f64), and
#    the manifest's guidance is "rel_fro <= 1e-5 in float is a fair bar". A wrong scale, mask or
#    landmark segment gives errors of 1e-2 or more on these inputs.
#  - float64 runs: 1e-12 (only summation order differs: ~ n·eps64 ≈ 1e-14), 1e-11 for Nyström with
#    the exact pseudoinverse, whose rounding is amplified by cond(A) ≈ 360 on tiny_n64_d32_m8.
add_executable(npy_fixture npy_fixture.cpp)
target_link_libraries(npy_fixture PRIVATE Eigen3::Eigen)
target_compile_features(npy_fixture PRIVATE cxx_std_17)
attnx_warnings(npy_fixture)

set(_data "${PROJECT_SOURCE_DIR}/tests/data")
set(_tiny "${_data}/tiny_n64_d32_m8")
set(_work "${CMAKE_CURRENT_BINARY_DIR}/attnx_run_work")
set(_run $<TARGET_FILE:attnx_run>)
set(_expect "${CMAKE_CURRENT_SOURCE_DIR}/cmake/run_expect.cmake")
set(_tiny_qkv --q "${_tiny}/q.npy" --k "${_tiny}/k.npy" --v "${_tiny}/v.npy")

add_test(NAME attnx_run_fixtures
         COMMAND ${CMAKE_COMMAND} -DFIXTURE=$<TARGET_FILE:npy_fixture> -DRUN=${_run} -DDATA=${_data}
                 -DWORK=${_work} -P "${CMAKE_CURRENT_SOURCE_DIR}/cmake/attnx_run_fixtures.cmake")
set_tests_properties(attnx_run_fixtures PROPERTIES FIXTURES_SETUP attnx_run_files)

# attnx_run_test(<name> CODE <exit status> [REGEX <regex>] [SETUP <fixture>] [NEEDS <fixture>...] ARGS ...)
function(attnx_run_test name)
  cmake_parse_arguments(T "" "CODE;REGEX;SETUP" "NEEDS;ARGS" ${ARGN})
  set(defs -DEXPECT_CODE=${T_CODE})
  if(DEFINED T_REGEX)
    list(APPEND defs "-DEXPECT_REGEX=${T_REGEX}")
  endif()
  add_test(NAME attnx_run_${name} COMMAND ${CMAKE_COMMAND} ${defs} -P "${_expect}" -- ${_run} ${T_ARGS})
  set_tests_properties(attnx_run_${name} PROPERTIES FIXTURES_REQUIRED "attnx_run_files;${T_NEEDS}" LABELS attnx_run)
  if(DEFINED T_SETUP)
    set_tests_properties(attnx_run_${name} PROPERTIES FIXTURES_SETUP ${T_SETUP})
  endif()
endfunction()

# --- results against the stored references ------------------------------------------------
attnx_run_test(exact_f32 CODE 0 SETUP attnx_run_exact_out
  REGEX "exact, float32, q 64x32.*compare: PASS"
  ARGS --method exact ${_tiny_qkv} --out "${_work}/exact_f32.npy"
       --compare "${_tiny}/exact_f64.npy" --max-rel-err 1e-5)
attnx_run_test(exact_materialized_f64 CODE 0 REGEX "exact-materialized, float64.*compare: PASS"
  ARGS --method exact-materialized --dtype float64 ${_tiny_qkv}
       --compare "${_tiny}/exact_f64.npy" --max-rel-err 1e-12)
attnx_run_test(nystrom_f32 CODE 0
  REGEX "report: num_landmarks=8 pinv=iterative pinv_iterations=6 pinv_residual=.*compare: PASS"
  ARGS --method nystrom --landmarks 8 --report ${_tiny_qkv} --out "${_work}/nystrom_f32.npy"
       --compare "${_tiny}/nystrom_f64.npy" --max-rel-err 1e-5)
attnx_run_test(nystrom_exact_pinv_f64 CODE 0 REGEX "pinv=exact.*compare: PASS"
  ARGS --method nystrom --landmarks 8 --pinv exact --dtype float64 --report ${_tiny_qkv}
       --compare "${_tiny}/nystrom_exactpinv_f64.npy" --max-rel-err 1e-11)
set(_conv "${_data}/n256_d64_m16_conv")
attnx_run_test(nystrom_conv_f64 CODE 0 REGEX "compare: PASS"
  ARGS --method nystrom --landmarks 16 --conv "${_conv}/conv_weight.npy" --dtype float64
       --q "${_conv}/q.npy" --k "${_conv}/k.npy" --v "${_conv}/v.npy"
       --compare "${_conv}/nystrom_conv_f64.npy" --max-rel-err 1e-12)
attnx_run_test(linformer_f32 CODE 0 REGEX "projection: E from .*k=16 n_max=64.*compare: PASS"
  ARGS --method linformer --e "${_tiny}/linformer_E.npy" --f "${_tiny}/linformer_F.npy" --report ${_tiny_qkv}
       --compare "${_tiny}/linformer_f64.npy" --max-rel-err 1e-5)
attnx_run_test(block_sparse_f32 CODE 0 REGEX "layout: block=8 blocks=8x8 kept_blocks=56.*compare: PASS"
  ARGS --method block-sparse --layout "${_tiny}/bigbird_layout.npy" --block 8 --report ${_tiny_qkv}
       --compare "${_tiny}/bigbird_f64.npy" --max-rel-err 1e-5)
# Exact limits: every block global (BigBird) or every token global (Longformer) is exact attention;
# with --causal on both sides the causal mask must reach the kernel.
attnx_run_test(bigbird_all_global CODE 0 REGEX "density=1.*compare: PASS"
  ARGS --method bigbird --block 8 --global 8 --random 2 --seed 5 --report ${_tiny_qkv}
       --compare "${_tiny}/exact_f64.npy" --max-rel-err 1e-5)
attnx_run_test(longformer_causal_all_global CODE 0 REGEX "longformer, float64.*compare: PASS"
  ARGS --method longformer --block 16 --window 1 --global-tokens 64 --causal --dtype float64 ${_tiny_qkv}
       --compare "${_work}/exact_causal.npy" --max-rel-err 1e-12)
# ... and --causal does change the result (so the test above cannot pass with the flag ignored).
attnx_run_test(causal_changes_output CODE 1 REGEX "compare: FAIL"
  ARGS --method exact --causal --dtype float64 ${_tiny_qkv} --compare "${_tiny}/exact_f64.npy" --max-rel-err 1e-3)
attnx_run_test(linformer_rank CODE 0 REGEX "projection: Gaussian N\\(0, 1/k\\), seed 7, F = E, k=16 n_max=64"
  ARGS --method linformer --rank 16 --seed 7 --share-kv --report ${_tiny_qkv} --out "${_work}/linformer_rank.npy")
# Feature-map attention: the drawn FAVOR+ features and the chunk are reported; elu + 1 has no scale.
attnx_run_test(performer_causal CODE 0 REGEX "features: FAVOR\\+ m = 64, iid, seed 3, chunk=16"
  ARGS --method performer --features 64 --seed 3 --iid --causal --chunk 16 --report ${_tiny_qkv}
       --out "${_work}/performer_causal.npy")
attnx_run_test(linear_f64 CODE 0 REGEX "linear, float64.*feature map: elu\\(x\\) \\+ 1, C = d = 32"
  ARGS --method linear --causal --dtype float64 --report ${_tiny_qkv} --out "${_work}/linear_f64.npy")
attnx_run_test(linear_scale CODE 2 REGEX "scale is set \\(0.5\\) but the feature map elu\\(x\\) \\+ 1 does not use one"
  ARGS --method linear --scale 0.5 ${_tiny_qkv} --out "${_work}/linear_scale.npy")
# A failing comparison exits with status 1 (exact attention is far from the Nyström reference).
attnx_run_test(compare_fails CODE 1 REGEX "compare: FAIL"
  ARGS --method exact ${_tiny_qkv} --compare "${_tiny}/nystrom_f64.npy" --max-rel-err 1e-3)

# --- storage orders, dtypes, byte orders ------------------------------------------------------
# float64 Fortran-order inputs: computed in float64 (the dtype of q), written as float64.
attnx_run_test(fortran_f64 CODE 0 SETUP attnx_run_f64_out REGEX "exact, float64.*compare: PASS"
  ARGS --method exact --q "${_work}/q_f64_F.npy" --k "${_work}/k_f64_F.npy" --v "${_work}/v_f64_F.npy"
       --out "${_work}/exact_f64_out.npy" --compare "${_tiny}/exact_f64.npy" --max-rel-err 1e-12)
add_test(NAME attnx_run_output_dtype COMMAND npy_fixture info "${_work}/exact_f64_out.npy")
set_tests_properties(attnx_run_output_dtype PROPERTIES FIXTURES_REQUIRED attnx_run_f64_out LABELS attnx_run
  PASS_REGULAR_EXPRESSION "dtype=<f8 shape=\\(64, 32\\) fortran_order=False")
# The same values in float64 Fortran order, computed as float32: bit-identical to the C-order run.
attnx_run_test(fortran_same_bits CODE 0 NEEDS attnx_run_exact_out REGEX "exact, float32.*rel_fro=0\\.0+e\\+00"
  ARGS --method exact --dtype float32 --q "${_work}/q_f64_F.npy" --k "${_work}/k_f64_F.npy"
       --v "${_work}/v_f64_F.npy" --compare "${_work}/exact_f32.npy" --max-rel-err 0)
attnx_run_test(big_endian CODE 0 REGEX "exact, float32.*rel_fro=0\\.0+e\\+00"
  NEEDS attnx_run_exact_out
  ARGS --method exact --q "${_work}/q_be.npy" --k "${_work}/k_be.npy" --v "${_work}/v_be.npy"
       --compare "${_work}/exact_f32.npy" --max-rel-err 0)
# Key padding from a bool .npy: the last 16 keys padded = attention on the first 48 keys.
attnx_run_test(key_padding CODE 0 REGEX "compare: PASS"
  ARGS --method exact --dtype float64 ${_tiny_qkv} --key-padding "${_work}/mask_last16.npy"
       --compare "${_work}/exact_first48.npy" --max-rel-err 1e-12)

# --- clear errors, exit status 2 ----------------------------------------------------------------
attnx_run_test(error_missing_file CODE 2 REGEX "attnx_run: error: npy: .*does_not_exist.npy: cannot open file"
  ARGS --method exact --q "${_work}/does_not_exist.npy" --k "${_tiny}/k.npy" --v "${_tiny}/v.npy" --out "${_work}/x.npy")
attnx_run_test(error_directory CODE 2 REGEX "attnx_run: error: npy: .*attnx_run_work: cannot open file: it is a directory"
  ARGS --method exact --q "${_work}" --k "${_tiny}/k.npy" --v "${_tiny}/v.npy" --out "${_work}/x.npy")
attnx_run_test(error_truncated CODE 2
  REGEX "q_truncated.npy: truncated: shape \\(64, 32\\) of float32 needs 8192 bytes of data but the file has only 8092"
  ARGS --method exact --q "${_work}/q_truncated.npy" --k "${_tiny}/k.npy" --v "${_tiny}/v.npy" --out "${_work}/x.npy")
attnx_run_test(error_wrong_dtype CODE 2 REGEX "q_int64.npy has dtype int64 .*float32 or float64"
  ARGS --method exact --q "${_work}/q_int64.npy" --k "${_tiny}/k.npy" --v "${_tiny}/v.npy" --out "${_work}/x.npy")
attnx_run_test(error_not_npy CODE 2 REGEX "not a .npy file"
  ARGS --method exact --q "${CMAKE_CURRENT_SOURCE_DIR}/CMakeLists.txt" --k "${_tiny}/k.npy" --v "${_tiny}/v.npy"
       --out "${_work}/x.npy")
set(_cross "${_data}/cross_nq192_nk256_d32_dv48")
attnx_run_test(error_shape_mismatch CODE 2
  REGEX "attnx::exact_attention: v has 256 rows but k has 64 \\(k is 64x32, v is 256x48"
  ARGS --method exact --q "${_tiny}/q.npy" --k "${_tiny}/k.npy" --v "${_cross}/v.npy" --out "${_work}/x.npy")
attnx_run_test(error_library_option CODE 2
  REGEX "attnx::nystrom_attention: num_landmarks \\(m = 65\\) must satisfy 1 <= m <= n \\(n = k.rows\\(\\) = 64\\)"
  ARGS --method nystrom --landmarks 65 ${_tiny_qkv} --out "${_work}/x.npy")
attnx_run_test(error_query_padding_length CODE 2
  REGEX "attnx::nystrom_attention: query_padding_mask has length 48 but there are n_q = q.rows\\(\\) = 64"
  ARGS --method nystrom --landmarks 8 --query-padding "${_work}/mask_len48.npy" ${_tiny_qkv} --out "${_work}/x.npy")
attnx_run_test(error_mask_shape CODE 2 REGEX "--key-padding: .*q.npy has shape \\(64, 32\\); expected a vector"
  ARGS --method exact ${_tiny_qkv} --key-padding "${_tiny}/q.npy" --out "${_work}/x.npy")
attnx_run_test(error_compare_shape CODE 2 REGEX "--compare: .* is 192x48 but the output is n_q x d_v = 64x32"
  ARGS --method exact ${_tiny_qkv} --compare "${_cross}/exact_f64.npy")
attnx_run_test(error_unknown_flag CODE 2 REGEX "unknown option '--landmark' \\(did you mean --landmarks\\?\\)"
  ARGS --method nystrom --landmark 8 ${_tiny_qkv} --out "${_work}/x.npy")
attnx_run_test(error_missing_value CODE 2 REGEX "--landmarks needs a value M \\(missing at the end\\)"
  ARGS --method nystrom ${_tiny_qkv} --out "${_work}/x.npy" --landmarks)
attnx_run_test(error_option_of_other_method CODE 2
  REGEX "--landmarks does not apply to --method exact \\(it is an option of nystrom\\)"
  ARGS --method exact --landmarks 8 ${_tiny_qkv} --out "${_work}/x.npy")
attnx_run_test(error_bad_number CODE 2 REGEX "--landmarks needs an integer, got '8x'"
  ARGS --method nystrom --landmarks 8x ${_tiny_qkv} --out "${_work}/x.npy")
attnx_run_test(help CODE 0
  REGEX "--method NAME.*--key-padding FILE.*--query-tile N.*--landmarks M.*--pinv-iterations N.*--query-padding FILE.*--e FILE, --k-proj.*--rank K.*--seed S.*--block B.*--random R.*--global-tokens T.*--layout FILE.*--chunk T.*--features M"
  ARGS --help)

# --- the README's attnx_run commands, as written ---------------------------------------------
add_test(NAME attnx_run_readme_commands
         COMMAND ${CMAKE_COMMAND} "-DREADME=${PROJECT_SOURCE_DIR}/README.md" -DRUN=${_run}
                 "-DDATA=${_data}/n256_d64_m16_conv" "-DWORK=${CMAKE_CURRENT_BINARY_DIR}/readme_commands"
                 -P "${CMAKE_CURRENT_SOURCE_DIR}/cmake/readme_commands.cmake")
set_tests_properties(attnx_run_readme_commands PROPERTIES LABELS attnx_run PASS_REGULAR_EXPRESSION "README commands ok")

# --- multi-head mode (--heads, --kv-heads, --head-layout) ------------------------------------
# Real activations of a pretrained model, [heads, 128, d_h] (one sequence, B = 1, BHND): exact
# attention through attnx::multi_head_attention reproduces the model's own output (1e-5, float).
set(_real "${_data}/realdata")
attnx_run_test(heads_realdata_bhnd CODE 0 REGEX "exact, float32, multi-head bhnd: q \\(B, H, N, D\\) = \\(1, 4, 128, 128\\).*compare: PASS"
  ARGS --method exact --head-layout bhnd --q "${_real}/dickens_L1_q.npy" --k "${_real}/dickens_L1_k.npy"
       --v "${_real}/dickens_L1_v.npy" --out "${_work}/heads_L1.npy"
       --compare "${_real}/dickens_L1_ctx_ref.npy" --max-rel-err 1e-5)
attnx_run_test(heads_nystrom CODE 0 REGEX "nystrom, float32, multi-head bhnd.*report: nystrom \\(m = 16"
  ARGS --method nystrom --landmarks 16 --report --head-layout bhnd --q "${_real}/gettysburg_L0_q.npy"
       --k "${_real}/gettysburg_L0_k.npy" --v "${_real}/gettysburg_L0_v.npy" --out "${_work}/heads_nystrom.npy")
# n x (H*D) matrices: one head of 32 columns equals the single-head reference.
attnx_run_test(heads_matrix_one_head CODE 0 REGEX "multi-head n x \\(H\\*D\\).*compare: PASS"
  ARGS --method exact --heads 1 ${_tiny_qkv} --compare "${_tiny}/exact_f64.npy" --max-rel-err 1e-5)
attnx_run_test(heads_bad_layout CODE 2 REGEX "--head-layout must be bnhd or bhnd, got 'nhd'"
  ARGS --method exact --head-layout nhd ${_tiny_qkv} --out "${_work}/unused.npy")
attnx_run_test(heads_not_divisible CODE 2 REGEX "32 columns, not a multiple of 3 heads"
  ARGS --method exact --heads 3 ${_tiny_qkv} --out "${_work}/unused.npy")
attnx_run_test(heads_kv_mismatch CODE 2 REGEX "--k: .* i.e. 4 heads in layout bhnd, but 3 were given"
  ARGS --method exact --heads 4 --kv-heads 3 --q "${_real}/dickens_L0_q.npy" --head-layout bhnd
       --k "${_real}/dickens_L0_k.npy" --v "${_real}/dickens_L0_v.npy" --out "${_work}/unused.npy")
