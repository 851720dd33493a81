"""Bad inputs: TypeError naming the argument for a wrong type, dtype or rank; ValueError with
attnx's own message for everything attnx::invalid_argument reports. Never a crash."""
import numpy as np
import pytest

import attnx
from reference import inputs

Q, K, V = inputs(16, 8, seed=30)


@pytest.mark.parametrize("bad,name", [
    (dict(q=Q.astype(np.int64)), "q"),
    (dict(k=K.astype(np.float16)), "k"),
    (dict(v=V.astype(np.complex128)), "v"),
    (dict(q=None), "q"),
    (dict(k="keys"), "k"),
    (dict(v=V.astype(">f8")), "v"),
])
def test_wrong_dtype_is_type_error(bad, name):
    args = dict(q=Q, k=K, v=V, **{})
    args.update(bad)
    with pytest.raises(TypeError, match=rf"exact_attention: {name} "):
        attnx.exact_attention(args["q"], args["k"], args["v"])


def test_mixed_dtypes_and_rank():
    with pytest.raises(TypeError, match="v has dtype float32 but q has float64"):
        attnx.exact_attention(Q, K, V.astype(np.float32))
    with pytest.raises(TypeError, match=r"q must be a 2-d array of shape \(n_q, d\), got a 1-d array"):
        attnx.nystrom_attention(Q[0], K, V)
    with pytest.raises(TypeError, match=r"v must be a 2-d array .* shape \(1, 16, 8\)"):
        attnx.bigbird_attention(Q, K, V[None])
    with pytest.raises(TypeError, match="E has dtype float32 but q has float64"):
        attnx.linformer_attention(Q, K, V, np.eye(16, dtype=np.float32))
    p32 = attnx.LinformerProjection.gaussian(4, 16, seed=1)
    with pytest.raises(TypeError, match="projection has dtype float32 but q has float64"):
        attnx.linformer_attention(Q, K, V, p32)
    with pytest.raises(TypeError, match="pass F=None"):
        attnx.linformer_attention(Q, K, V, p32, np.eye(16))


def test_masks():
    with pytest.raises(ValueError, match=r"attnx::exact_attention: key_padding_mask has length 15 but there are "
                                         r"n_k = k.rows\(\) = 16 keys"):
        attnx.exact_attention(Q, K, V, key_padding_mask=np.zeros(15, dtype=bool))
    with pytest.raises(TypeError, match="key_padding_mask must be a bool array"):
        attnx.exact_attention(Q, K, V, key_padding_mask=np.zeros(16, dtype=np.int32))
    with pytest.raises(TypeError, match="query_padding_mask must be a 1-d bool array"):
        attnx.nystrom_attention(Q, K, V, num_landmarks=4, query_padding_mask=np.zeros((16, 1), dtype=bool))
    with pytest.raises(ValueError, match="query_padding_mask has length 3"):
        attnx.nystrom_attention(Q, K, V, num_landmarks=2, query_padding_mask=np.zeros(3, dtype=bool))


def test_value_errors_carry_attnx_messages():
    cases = [
        (lambda: attnx.exact_attention(Q, K[:, :4], V),
         r"attnx::exact_attention: k has 4 columns but q has 8 \(q is 16x8, k is 16x4; both need the same head"),
        (lambda: attnx.exact_attention(Q, K, V[:5]), r"v has 5 rows but k has 16"),
        (lambda: attnx.exact_attention(Q[:0], K, V), r"q is empty \(0x8\)"),
        (lambda: attnx.exact_attention(Q, K, V, scale=-1.0), r"scale \(-1\) must be finite and > 0"),
        (lambda: attnx.exact_attention(Q, K, V, kernel="fast"), r"kernel must be 'streaming' or 'materialized'"),
        (lambda: attnx.exact_attention(Q, K, V, query_tile=0), r"query_tile \(0\) must be >= 1"),
        (lambda: attnx.nystrom_attention(Q, K, V, num_landmarks=300),
         r"attnx::nystrom_attention: num_landmarks \(m = 300\) must satisfy 1 <= m <= n \(n = k.rows\(\) = 16\)"),
        (lambda: attnx.nystrom_attention(Q, K, V, num_landmarks=4, causal=True), r"causal = true is not defined"),
        (lambda: attnx.nystrom_attention(Q, K, V, num_landmarks=4, pinv="svd"), r"pinv must be 'iterative' or"),
        (lambda: attnx.nystrom_attention(Q, K, V, num_landmarks=4, conv_kernel=[1.0, 2.0]), r"conv_kernel has even"),
        (lambda: attnx.linformer_attention(Q, K, V, np.eye(8, 16), causal=True), r"linformer_attention: causal"),
        (lambda: attnx.linformer_attention(Q, K, V, np.eye(8, 12)), r"linformer_attention: .*12"),
        (lambda: attnx.linformer_attention(Q, K, V, attnx.LinformerProjection.identity(8)), r"n_max|max_length|8"),
        (lambda: attnx.block_sparse_attention(Q, K, V, attnx.BlockLayout.dense(32, 8)), r"block_sparse_attention"),
        (lambda: attnx.bigbird_attention(Q, K, V, block=0), r"block \(0\) must be >= 1"),
        (lambda: attnx.LinformerProjection.gaussian(0, 16, seed=1), r"k \(0\) must be >= 1"),
        (lambda: attnx.LinformerProjection.gaussian(4, 16, seed=1, sharing="both"), r"sharing must be"),
        (lambda: attnx.LinformerProjection.from_matrices(np.eye(2), np.eye(3)), r"e is 2x2 but f is 3x3"),
        (lambda: attnx.BlockLayout.from_block_mask(np.ones((2, 2), dtype=bool), 4, 9, 8), r"mask is 2x2"),
        (lambda: attnx.compare(Q, K[:, :3]), r"compare: approx is 16x8 but reference is 16x3"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_non_finite_inputs_and_overflow():
    bad = Q.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"q \(16x8\) has a non-finite entry q\(3, 5\)"):
        attnx.exact_attention(bad, K, V)
    with pytest.raises(ValueError, match="logits may overflow float"):
        attnx.exact_attention((Q * 1e30).astype(np.float32), (K * 1e30).astype(np.float32), V.astype(np.float32))
    out = attnx.exact_attention(Q, K, V, check_finite=False)  # skips the scan; finite inputs still fine
    assert np.all(np.isfinite(out))


def test_wrong_argument_types():
    with pytest.raises(TypeError, match="scale must be a number or None, got str"):
        attnx.exact_attention(Q, K, V, scale="big")
    with pytest.raises(TypeError):
        attnx.block_sparse_attention(Q, K, V, "layout")
    with pytest.raises(TypeError):
        attnx.nystrom_attention(Q, K, V, num_landmarks=2.5)
    with pytest.raises(TypeError, match="conv_kernel must be a 1-d array of real numbers"):
        attnx.nystrom_attention(Q, K, V, num_landmarks=2, conv_kernel=["a"])
    with pytest.raises(TypeError, match="mask must be a 2-d bool array"):
        attnx.BlockLayout.from_block_mask(np.ones((2, 2), dtype=np.uint8), 4)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        attnx.LinformerProjection.identity(4, dtype=np.int32)


def test_index_errors():
    layout = attnx.BlockLayout.dense(16, 4)
    with pytest.raises(IndexError, match=r"i = 4 is out of range \[0, 4\)"):
        layout.row(4)
    with pytest.raises(IndexError):
        layout.contains(-1, 0)
    assert not layout.contains(0, 99)
