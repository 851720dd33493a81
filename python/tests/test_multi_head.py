"""multi_head_attention over 4-d arrays against a loop of NumPy single-head references."""
import numpy as np
import pytest

import attnx
from reference import exact, rel_fro


def heads(B, N, H, D, seed, dtype=np.float64, spread=1.0):
    rng = np.random.default_rng(seed)
    return (spread * rng.standard_normal((B, N, H, D))).astype(dtype)


def reference(q, k, v, causal=False, key_lengths=None, query_lengths=None):
    """bnhd arrays; h_kv = h // (H_q / H_kv); sequence b cut to its lengths, zero rows after."""
    B, Nq, Hq, _ = q.shape
    Hkv, Nk, Dv = k.shape[2], k.shape[1], v.shape[3]
    out = np.zeros((B, Nq, Hq, Dv))
    for b in range(B):
        lq = Nq if query_lengths is None else query_lengths[b]
        lk = Nk if key_lengths is None else key_lengths[b]
        for h in range(Hq):
            g = h // (Hq // Hkv)
            if lk > 0:
                out[b, :lq, h] = exact(q[b, :lq, h], k[b, :lk, g], v[b, :lk, g], causal=causal)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("Hkv", [4, 2, 1])  # multi-head, grouped-query, multi-query
def test_exact_heads_against_loop(dtype, Hkv):
    q, k, v = heads(2, 24, 4, 8, 70, dtype), heads(2, 30, Hkv, 8, 71, dtype), heads(2, 30, Hkv, 6, 72, dtype)
    out = attnx.multi_head_attention(attnx.Exact(), q, k, v)
    assert out.shape == (2, 24, 4, 6) and out.dtype == dtype and out.flags.c_contiguous
    assert rel_fro(out, reference(q, k, v)) <= (1e-12 if dtype == np.float64 else 1e-5)
    # layout 'bhnd' (PyTorch's SDPA): the same numbers, transposed
    t = lambda x: np.ascontiguousarray(x.transpose(0, 2, 1, 3))
    out_t = attnx.multi_head_attention(attnx.Exact(), t(q), t(k), t(v), layout="bhnd", num_kv_heads=Hkv)
    assert out_t.shape == (2, 4, 24, 6) and np.array_equal(out_t, t(out))


def test_lengths_masks_causal_and_strided_views():
    q, k, v = heads(3, 20, 2, 8, 73), heads(3, 20, 2, 8, 74), heads(3, 20, 2, 8, 75)
    kl, ql = [20, 7, 0], [20, 11, 5]
    out = attnx.multi_head_attention(attnx.Exact(), q, k, v, causal=True, key_lengths=np.array(kl),
                                     query_lengths=ql)
    assert rel_fro(out, reference(q, k, v, causal=True, key_lengths=kl, query_lengths=ql)) <= 1e-12
    mask = np.zeros((3, 20), dtype=bool)
    for b, l in enumerate(kl):
        mask[b, l:] = True
    masked = attnx.multi_head_attention(attnx.Exact(), q, k, v, key_padding_mask=mask)
    assert rel_fro(masked[:2], reference(q, k, v, key_lengths=kl)[:2]) <= 1e-12
    # Q, K, V as views into one packed (B, N, 3, H, D) buffer, read in place
    packed = np.stack([q, k, v], axis=2)
    pv = attnx.multi_head_attention(attnx.Exact(), packed[:, :, 0], packed[:, :, 1], packed[:, :, 2])
    assert np.array_equal(pv, attnx.multi_head_attention(attnx.Exact(), q, k, v))


def test_every_mechanism_equals_single_head_calls():
    q, k, v = heads(2, 64, 2, 8, 76, spread=1.0), heads(2, 64, 2, 8, 77), heads(2, 64, 2, 8, 78)
    mechs = [attnx.Nystrom(num_landmarks=8), attnx.BigBird(block=16, random=1),
             attnx.BlockSparse(attnx.BlockLayout.dense(64, 16)),
             attnx.Linformer(attnx.LinformerProjection.gaussian(8, 64, seed=1, dtype=np.float64))]
    for mech in mechs:
        out = attnx.multi_head_attention(mech, q, k, v)
        for b in range(2):
            for h in range(2):
                assert rel_fro(out[b, :, h], mech(q[b, :, h], k[b, :, h], v[b, :, h])) <= 1e-12, (mech, b, h)


def test_multi_head_errors():
    q, k, v = heads(2, 8, 4, 4, 79), heads(2, 8, 3, 4, 80), heads(2, 8, 3, 4, 81)
    with pytest.raises(ValueError, match="attnx::multi_head_attention"):
        attnx.multi_head_attention(attnx.Exact(), q, k, v)  # 4 query heads, 3 key/value heads
    with pytest.raises(TypeError, match=r"q must be a 4-d array of shape \(B, N, H, D\)"):
        attnx.multi_head_attention(attnx.Exact(), q[0], k, v)
    with pytest.raises(TypeError, match="mechanism must be an attnx mechanism value"):
        attnx.multi_head_attention(None, q, k, v)
    with pytest.raises(ValueError, match="layout must be 'bnhd'"):
        attnx.multi_head_attention(attnx.Exact(), q, q, q, layout="nhd")
    with pytest.raises(ValueError, match="num_kv_heads = 2 but k has 4 heads"):
        attnx.multi_head_attention(attnx.Exact(), q, q, q, num_kv_heads=2)
    with pytest.raises(TypeError, match="key_lengths must be a 1-d integer array"):
        attnx.multi_head_attention(attnx.Exact(), q, q, q, key_lengths=[1.5, 2.0])
    with pytest.raises(TypeError, match="v has dtype float32 but q has float64"):
        attnx.multi_head_attention(attnx.Exact(), q, q, q.astype(np.float32))
