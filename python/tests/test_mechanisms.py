"""Every function of the attnx module against a NumPy float64 reference (reference.py)."""
import numpy as np
import pytest

import attnx
from reference import exact, inputs, iterative_pinv, linformer, nystrom, rel_fro, segment_means, softmax_rows

# Tolerances. double: attnx and NumPy evaluate the same formula in a different order; each output
# is a convex combination of V rows, so the difference is a few eps_double times a condition
# factor: 1e-12 for softmax attention. float: the inputs are exactly representable in both, and
# the kernel rounds logits of size |s q.k| <= ~10 to ~1e-6 absolute, which moves each softmax
# weight by ~1e-6 relative; 1e-5 (the manifest's bar for float) leaves a factor of 10.
TOL = {np.float64: 1e-12, np.float32: 1e-5}
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_exact_attention(dtype, causal, masked):
    q, k, v = inputs(48, 16, n_k=64, d_v=24, seed=1, dtype=dtype)
    mask = np.zeros(64, dtype=bool)
    if masked:
        mask[[3, 17, 40, 63]] = True
    kw = dict(causal=causal, key_padding_mask=mask if masked else None)
    want = exact(q, k, v, **kw)
    for kernel in ("streaming", "materialized"):
        got = attnx.exact_attention(q, k, v, kernel=kernel, **kw)
        assert got.dtype == dtype and got.shape == (48, 24)
        assert rel_fro(got, want) <= TOL[dtype], kernel


def test_exact_scale_tiles_and_large_logits():
    q, k, v = inputs(70, 8, seed=2)
    got = attnx.exact_attention(q, k, v, scale=0.7, query_tile=16, key_tile=5)
    assert rel_fro(got, exact(q, k, v, scale=0.7)) <= 1e-12
    # logits around 1e3: a softmax without max subtraction overflows exp here
    big = attnx.exact_attention(q * 30, k * 30, v, scale=0.2)
    want = exact(q * 30, k * 30, v, scale=0.2)
    assert np.abs(q * 30 @ (k * 30).T * 0.2).max() > 500
    assert np.all(np.isfinite(big)) and rel_fro(big, want) <= 1e-12


def test_exact_decode_key_tile():
    # one query row takes decode_key_tile (default 256) instead of key_tile
    q, k, v = inputs(1, 8, n_k=700, seed=5)
    want = exact(q, k, v)
    for tile in (1, 7, 256, 5000):
        assert rel_fro(attnx.exact_attention(q, k, v, decode_key_tile=tile), want) <= 1e-12, tile
        assert rel_fro(attnx.Exact(decode_key_tile=tile)(q, k, v), want) <= 1e-12, tile
    with pytest.raises(ValueError, match=r"decode_key_tile \(0\) must be >= 1"):
        attnx.exact_attention(q, k, v, decode_key_tile=0)
    with pytest.raises(ValueError, match=r"decode_key_tile \(-1\) must be >= 1"):
        attnx.Exact(decode_key_tile=-1)(q, k, v)


def test_fully_masked_rows_are_zero():
    q, k, v = inputs(8, 4, n_k=4, seed=3)
    out = attnx.exact_attention(q, k, v, causal=True)  # n_q > n_k: queries 0..3 see no key
    assert np.all(out[:4] == 0)
    assert rel_fro(out[4:], exact(q, k, v, causal=True)[4:]) <= 1e-12
    everything = attnx.exact_attention(q, k, v, key_padding_mask=np.ones(4, dtype=bool))
    assert np.all(everything == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nystrom_exact_limit(dtype):
    # m = n with the exact pseudoinverse: F A+ B V = A A+ A V = A V, exact attention. Logits of
    # std ~1 (spread 1) keep cond(A) ~1e2: double loses cond * eps ~1e-13 (bound 1e-9 as in the
    # C++ test); float forms A in float (1e-7) and inverts it: cond * 1e-7 ~1e-5, bound 1e-4.
    q, k, v = inputs(40, 16, seed=4, spread=1.0, dtype=dtype)
    got = attnx.nystrom_attention(q, k, v, num_landmarks=40, pinv="exact")
    assert got.dtype == dtype
    assert rel_fro(got, exact(q, k, v)) <= (1e-9 if dtype == np.float64 else 1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,m", [(96, 8), (100, 7)])  # 100 = 7 segments of 15/14 rows
def test_nystrom_formula(dtype, n, m):
    # Six iterations of the pseudoinverse amplify rounding by about cond(A) (~1e2 here): double
    # 1e-9 has room; float: ~cond * 1e-7, bound 1e-4.
    q, k, v = inputs(n, 16, seed=5, spread=1.0, dtype=dtype)
    got, report = attnx.nystrom_attention(q, k, v, num_landmarks=m, return_report=True)
    assert rel_fro(got, nystrom(q, k, v, m)) <= (1e-9 if dtype == np.float64 else 1e-4)
    s = 1 / np.sqrt(16)
    a = softmax_rows(s * segment_means(q.astype(np.float64), m) @ segment_means(k.astype(np.float64), m).T)
    z = iterative_pinv(a, 6)
    assert report.num_landmarks == m and report.pinv == "iterative" and report.pinv_iterations == 6
    want = np.linalg.norm(np.eye(m) - a @ z)
    assert report.pinv_residual == pytest.approx(want, rel=1e-6 if dtype == np.float64 else 1e-3, abs=1e-12)
    assert report.max_column_sum == pytest.approx(np.abs(a).sum(axis=0).max(), rel=1e-6)


def test_nystrom_exact_pinv_formula():
    q, k, v = inputs(64, 16, seed=6, spread=1.0)
    got = attnx.nystrom_attention(q, k, v, num_landmarks=16, pinv="exact")
    assert rel_fro(got, nystrom(q, k, v, 16, pinv="exact")) <= 1e-9


def test_nystrom_padding_equals_cut_sequence():
    q, k, v = inputs(60, 8, seed=7, spread=1.0)
    pad = np.zeros(60, dtype=bool)
    pad[[5, 30, 31, 59]] = True
    out = attnx.nystrom_attention(q, k, v, num_landmarks=8, key_padding_mask=pad, query_padding_mask=pad)
    cut = attnx.nystrom_attention(q[~pad], k[~pad], v[~pad], num_landmarks=8)
    assert np.all(out[pad] == 0)
    assert rel_fro(out[~pad], cut) <= 1e-12


def test_nystrom_conv_kernel():
    q, k, v = inputs(50, 8, seed=8)
    w = np.array([0.5, -1.0, 2.0, 0.25, 1.5])
    base = attnx.nystrom_attention(q, k, v, num_landmarks=5)
    with_conv = attnx.nystrom_attention(q, k, v, num_landmarks=5, conv_kernel=w)
    vp = np.vstack([np.zeros((2, 8)), v, np.zeros((2, 8))])  # "same" cross-correlation, zero padded
    conv = sum(w[t] * vp[t:t + 50] for t in range(5))
    assert rel_fro(with_conv - base, conv) <= 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
def test_linformer_identity_is_exact(dtype):
    q, k, v = inputs(32, 8, seed=9, dtype=dtype)
    eye = np.eye(32, dtype=dtype)
    want = exact(q, k, v)
    assert rel_fro(attnx.linformer_attention(q, k, v, eye, eye), want) <= TOL[dtype]
    proj = attnx.LinformerProjection.identity(32, dtype=dtype)
    assert proj.dtype == dtype and proj.rank() == 32 and proj.sharing() == "key_value"
    assert rel_fro(attnx.linformer_attention(q, k, v, proj), want) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_linformer_formula(dtype):
    q, k, v = inputs(40, 8, n_k=48, d_v=12, seed=10, dtype=dtype)
    rng = np.random.default_rng(11)
    e = (rng.standard_normal((6, 48)) / np.sqrt(6)).astype(dtype)
    f = (rng.standard_normal((6, 48)) / np.sqrt(6)).astype(dtype)
    assert rel_fro(attnx.linformer_attention(q, k, v, e, f), linformer(q, k, v, e, f)) <= TOL[dtype]
    assert rel_fro(attnx.linformer_attention(q, k, v, e), linformer(q, k, v, e, e)) <= TOL[dtype]  # F = E
    pad = np.zeros(48, dtype=bool)
    pad[[0, 20, 47]] = True
    got = attnx.linformer_attention(q, k, v, e, f, key_padding_mask=pad)
    assert rel_fro(got, linformer(q, k, v, e, f, key_padding_mask=pad)) <= TOL[dtype]
    # a projection for longer sequences uses its first n_k columns
    wide_e = np.hstack([e, np.ones((6, 10), dtype)])
    wide_f = np.hstack([f, np.ones((6, 10), dtype)])
    proj = attnx.LinformerProjection.from_matrices(wide_e, wide_f)
    assert proj.max_length() == 58 and np.array_equal(proj.e(), wide_e) and np.array_equal(proj.f(), wide_f)
    assert rel_fro(attnx.linformer_attention(q, k, v, proj), linformer(q, k, v, e, f)) <= TOL[dtype]
    assert rel_fro(attnx.Linformer(proj)(q, k, v), linformer(q, k, v, e, f)) <= TOL[dtype]


def test_linformer_gaussian_projection():
    p = attnx.LinformerProjection.gaussian(16, 256, seed=3)
    assert p.dtype == np.float32 and p.rank() == 16 and p.max_length() == 256 and p.sharing() == "separate"
    e = p.e()
    assert e.shape == (16, 256) and not e.flags.writeable
    assert abs(e.std() * np.sqrt(16) - 1) < 0.05  # N(0, 1/k) entries
    same = attnx.LinformerProjection.gaussian(16, 256, seed=3)
    assert np.array_equal(same.e(), e) and not np.array_equal(p.f(), e)
    shared = attnx.LinformerProjection.gaussian(16, 256, seed=3, sharing="key_value", dtype=np.float64)
    assert np.array_equal(shared.e(), shared.f()) and shared.dtype == np.float64
    q, k, v = inputs(100, 8, seed=12, dtype=np.float32)
    want = linformer(q, k, v, e[:, :100], p.f()[:, :100])
    assert rel_fro(attnx.linformer_attention(q, k, v, p), want) <= 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_block_sparse_dense_is_exact(dtype):
    q, k, v = inputs(50, 8, n_k=70, seed=13, dtype=dtype)
    layout = attnx.BlockLayout.dense(50, 70, 16)
    assert layout.density() == 1.0 and layout.to_dense_mask().all()
    assert rel_fro(attnx.block_sparse_attention(q, k, v, layout), exact(q, k, v)) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_bigbird_against_dense_mask(dtype, causal):
    n = 200
    q, k, v = inputs(n, 16, seed=14, dtype=dtype)
    layout = attnx.BlockLayout.bigbird(n, block=16, window=3, global_=2, random=2, seed=5)
    dense = layout.to_dense_mask()
    assert dense.dtype == np.bool_ and dense.shape == (n, n) and 0 < dense.mean() < 1
    pad = np.zeros(n, dtype=bool)
    pad[[7, 100]] = True
    want = exact(q, k, v, causal=causal, key_padding_mask=pad, allowed=dense)
    got = attnx.block_sparse_attention(q, k, v, layout, causal=causal, key_padding_mask=pad)
    assert rel_fro(got, want) <= TOL[dtype]
    one_call = attnx.bigbird_attention(q, k, v, block=16, window=3, global_=2, random=2, seed=5, causal=causal,
                                       key_padding_mask=pad)
    assert np.array_equal(one_call, got)


def test_block_layout_builders():
    lf = attnx.BlockLayout.longformer(256, 32, 3, 40)  # 40 global tokens -> 2 global blocks
    bm = lf.to_block_mask()
    assert bm.shape == (8, 8) and bm[:2].all() and bm[:, :2].all()
    for i in range(2, 8):
        assert set(lf.row(i)) == {0, 1} | {j for j in (i - 1, i, i + 1) if 0 <= j < 8}
    assert lf.contains(5, 4) and not lf.contains(5, 7)
    again = attnx.BlockLayout.from_block_mask(bm, 32)
    assert again == lf and not (again != lf)
    cross = attnx.BlockLayout.from_block_mask(np.array([[True, False, True]]), 10, 7, 25)
    assert (cross.n_q(), cross.n_k(), cross.query_blocks(), cross.key_blocks()) == (7, 25, 1, 3)
    assert cross.kept_entries() == 7 * (10 + 5) and list(cross.row_ptr()) == [0, 2] and list(cross.col_idx()) == [0, 2]
    assert np.array_equal(cross.to_dense_mask()[0], np.r_[np.ones(10), np.zeros(10), np.ones(5)].astype(bool))
    assert str(lf).splitlines() == ["########", "########", "####....", "#####...", "##.###..", "##..###.",
                                    "##...###", "##....##"]
    assert "BlockLayout(n_q=256" in repr(lf)
    bb = attnx.BlockLayout.bigbird(1024, seed=1)
    assert bb == attnx.BlockLayout.bigbird(1024, seed=1) and bb != attnx.BlockLayout.bigbird(1024, seed=2)


def test_block_layout_write_pgm(tmp_path):
    path = tmp_path / "layout.pgm"
    attnx.BlockLayout.longformer(128, 32, 1, 0).write_pgm(str(path), 2)
    data = path.read_bytes()
    assert data.startswith(b"P5\n8 8\n255\n") and len(data) == len(b"P5\n8 8\n255\n") + 64
    with pytest.raises(OSError, match="cannot open"):
        attnx.BlockLayout.dense(4, 2).write_pgm(str(tmp_path / "missing" / "x.pgm"))


def test_mechanism_values_equal_functions():
    q, k, v = inputs(64, 8, seed=15)
    cases = [
        (attnx.Exact(causal=True), attnx.exact_attention(q, k, v, causal=True), "exact"),
        (attnx.Nystrom(num_landmarks=8), attnx.nystrom_attention(q, k, v, num_landmarks=8), "nystrom"),
        (attnx.BigBird(block=16, random=1), attnx.bigbird_attention(q, k, v, block=16, random=1), "bigbird"),
        (attnx.BlockSparse(attnx.BlockLayout.dense(64, 16)), exact(q, k, v), "block_sparse"),
    ]
    for mech, want, name in cases:
        got = mech(q, k, v)
        assert mech.name() == name and mech.parameters() and name in repr(mech)
        assert rel_fro(got, want) <= 1e-12, name
    assert attnx.Nystrom(num_landmarks=32).parameters() == "m = 32, 6 pinv iterations"
    assert attnx.Exact(decode_key_tile=64).parameters() == "streaming, tile 128x128, one query 64"


def test_compare():
    rng = np.random.default_rng(16)
    a = rng.standard_normal((20, 6))
    r = rng.standard_normal((20, 6))
    r[3] = 0
    a[3] = 0  # a pair of zero rows counts as cosine 1
    e = attnx.compare(a.astype(np.float32), r)
    a32 = a.astype(np.float32).astype(np.float64)
    assert e.rel_fro == pytest.approx(np.linalg.norm(a32 - r) / np.linalg.norm(r), rel=1e-12)
    assert e.max_abs == pytest.approx(np.abs(a32 - r).max(), rel=1e-12)
    cos = [1.0 if i == 3 else a32[i] @ r[i] / np.linalg.norm(a32[i]) / np.linalg.norm(r[i]) for i in range(20)]
    assert e.mean_row_cosine == pytest.approx(np.mean(cos), rel=1e-12)
    assert "rel_fro" in repr(e)
    assert attnx.compare(r, r).rel_fro == 0.0


def test_module_metadata():
    assert attnx.__version__.count(".") == 2
    assert attnx.max_threads() >= 1
    assert isinstance(attnx.openmp, bool)
