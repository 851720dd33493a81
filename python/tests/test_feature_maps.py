"""Linear attention, Performer (FAVOR+) and their decode states against the dense float64 form
(φ(Q) φ(K)ᵀ [V | 1], row-normalised) written in reference.py."""
import numpy as np
import pytest

import attnx
from reference import elu_plus_one, exact, favor_features, feature_attention, inputs, rel_fro

# Tolerances. double: attnx sums φ(q)ᵀ S over a different grouping than the dense product (plus
# its log-scale stabilisation, exact up to rounding): a few eps_double times the number of terms;
# eps = 1e-30 in the calls (the floor of float is 1.2e-38) makes the denominator's regulariser
# negligible: attnx adds it to a denominator scaled by the stabilisation, which may be ~1e-2. float: the features
# and sums are rounded to ~1e-7 relative over n = 64 terms with positive weights; 1e-5 leaves
# a factor of 10.
TOL = {np.float64: 1e-11, np.float32: 1e-5}
DTYPES = [np.float32, np.float64]
EPS = 1e-30


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_linear_attention_dense_form(dtype, causal, masked):
    q, k, v = inputs(40, 8, n_k=64 if not causal else 40, d_v=12, seed=11, spread=1.0, dtype=dtype)
    mask = np.zeros(k.shape[0], dtype=bool)
    if masked:
        mask[[0, 9, 31]] = True
    kw = dict(causal=causal, key_padding_mask=mask if masked else None)
    want = feature_attention(elu_plus_one(q), elu_plus_one(k), v, **kw)
    got = attnx.linear_attention(q, k, v, eps=EPS, chunk=7, **kw)
    assert got.dtype == dtype and got.shape == (40, 12)
    assert rel_fro(got, want) <= TOL[dtype]
    assert rel_fro(attnx.Linear(eps=EPS, chunk=7, **kw)(q, k, v), want) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_performer_dense_form(dtype, causal):
    q, k, v = inputs(48, 16, d_v=8, seed=12, spread=1.0, dtype=dtype)
    feats = attnx.PerformerFeatures.draw(16, seed=5, num_features=32, dtype=dtype)
    assert feats.matrix().shape == (32, 16) and feats.dtype == dtype and feats.num_features() == 32
    s = 0.3
    want = feature_attention(favor_features(q, feats.matrix(), s, 1e-6),
                             favor_features(k, feats.matrix(), s, 1e-6), v, causal=causal)
    got = attnx.performer_attention(q, k, v, feats, scale=s, causal=causal, eps=EPS, chunk=5)
    assert got.dtype == dtype
    assert rel_fro(got, want) <= TOL[dtype]
    assert rel_fro(attnx.Performer(feats, scale=s, causal=causal, eps=EPS, chunk=5)(q, k, v), want) <= TOL[dtype]


def test_features_from_matrix_and_redraw():
    w = np.random.default_rng(3).standard_normal((24, 8))
    f = attnx.PerformerFeatures.from_matrix(w, stabilizer=0.0)
    assert np.array_equal(f.matrix(), w) and f.dtype == np.float64 and not f.seeded()
    with pytest.raises(ValueError, match="no seed"):
        f.redraw()
    g = attnx.PerformerFeatures.draw(8, seed=9, num_features=24, dtype=np.float64)
    h = g.redraw()
    assert h.draw_index() == g.draw_index() + 1 and not np.array_equal(h.matrix(), g.matrix())
    # the same seed gives the same W (attnx's counter-based generator)
    assert np.array_equal(attnx.PerformerFeatures.draw(8, seed=9, num_features=24, dtype=np.float64).matrix(),
                          g.matrix())
    assert "PerformerFeatures" in repr(g)
    with pytest.raises(ValueError, match="norms"):
        attnx.PerformerFeatures.draw(8, 1, norms="unit")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("performer", [False, True])
def test_decode_state_equals_causal_batch(dtype, performer):
    n, d, dv = 30, 8, 6
    q, k, v = inputs(n, d, d_v=dv, seed=14, spread=1.0, dtype=dtype)
    feats = attnx.PerformerFeatures.draw(d, seed=2, num_features=16, dtype=dtype) if performer else None
    if performer:
        batch = attnx.performer_attention(q, k, v, feats, causal=True, eps=EPS)
    else:
        batch = attnx.linear_attention(q, k, v, causal=True, eps=EPS)
    state = attnx.LinearAttentionState(d, dv, features=feats, eps=EPS, dtype=None if performer else dtype)
    assert state.dtype == dtype and state.feature_dim == (16 if performer else d)
    rows = [state.step(q[i], k[i], v[i]) for i in range(12)]
    assert all(r.shape == (dv,) and r.dtype == dtype for r in rows)
    assert state.tokens == 12
    rest = state.prefill(q[12:], k[12:], v[12:])  # the chunked path continues the same sums
    got = np.vstack([np.array(rows), rest])
    assert rel_fro(got, batch) <= TOL[dtype]
    # query: every absorbed token, without changing the state
    memory = state.query(q[:5])
    assert state.tokens == n and memory.shape == (5, dv)
    phi = (lambda x: favor_features(x, feats.matrix(), 1 / np.sqrt(d), 1e-6)) if performer else elu_plus_one
    assert rel_fro(memory, feature_attention(phi(q[:5]), phi(k), v)) <= TOL[dtype]
    state.reset()
    assert state.tokens == 0
    state.prefill(k, v)
    assert rel_fro(state.query(q[:5]), memory) <= TOL[dtype]


def test_feature_map_mechanisms_elsewhere():
    q, k, v = inputs(32, 8, seed=15, spread=1.0)
    lin = attnx.Linear()
    feats = attnx.PerformerFeatures.draw(8, seed=3, num_features=64, dtype=np.float64)
    perf = attnx.Performer(feats)
    # estimate_error with every row sampled equals the exact relative error
    for mech in (lin, perf):
        est = attnx.estimate_error(mech, q, k, v, samples=32)
        assert abs(est.rel_fro - rel_fro(mech(q, k, v), exact(q, k, v))) <= 1e-12
    # multi_head_attention: one head equals the single-head call
    out = attnx.multi_head_attention(perf, q[None, :, None, :], k[None, :, None, :], v[None, :, None, :])
    assert np.allclose(out[0, :, 0, :], perf(q, k, v), rtol=0, atol=1e-12)
    assert "performer" in repr(perf) and "linear" in repr(lin)


def test_feature_map_errors():
    q, k, v = inputs(8, 4, seed=16)
    with pytest.raises(TypeError, match="PerformerFeatures have dtype float32 but q has float64"):
        attnx.performer_attention(q, k, v, attnx.PerformerFeatures.draw(4, 1, dtype=np.float32))
    with pytest.raises(ValueError, match="chunk"):
        attnx.linear_attention(q, k, v, causal=True, chunk=0)
    with pytest.raises(ValueError, match="eps"):
        attnx.linear_attention(q, k, v, eps=-1.0)
    state = attnx.LinearAttentionState(4, 4)
    with pytest.raises(ValueError, match="entries but d = 4"):
        state.step(q[0, :3], k[0], v[0])
    with pytest.raises(TypeError, match="1-d"):
        state.step(q[:1], k[0], v[0])
    with pytest.raises(TypeError, match="dtype float32 but the state has float64 .*dtype='float32'"):
        state.step(q[0].astype(np.float32), k[0], v[0])
    with pytest.raises(TypeError, match="features must be None"):
        attnx.LinearAttentionState(4, 4, features="favor")
    for call in (lambda: attnx.LinearAttentionState(4, 4, scale=0.5), lambda: attnx.linear_attention(q, k, v, scale=0.5),
                 lambda: attnx.Linear(scale=0.5)(q, k, v)):
        with pytest.raises(ValueError, match="does not use one"):  # elu + 1 has no scale
            call()
    assert state.tokens == 0  # nothing was absorbed by the failed calls


def test_shared_state_across_threads():
    # Several threads stepping one state: the lock keeps the sums consistent; the tokens'
    # order is the threads', so compare against a prefill of the same tokens in any order
    # through query (non-causal over the whole memory, order-independent up to rounding).
    from concurrent.futures import ThreadPoolExecutor
    n, d = 64, 8
    q, k, v = inputs(n, d, seed=17, spread=1.0)
    state = attnx.LinearAttentionState(d, d)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: state.step(q[i], k[i], v[i]), range(n)))
    assert state.tokens == n
    ref = attnx.LinearAttentionState(d, d)
    ref.prefill(k, v)
    assert rel_fro(state.query(q), ref.query(q)) <= 1e-12
