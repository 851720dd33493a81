"""NumPy float64 references the tests compare attnx against, written from the formulas (README,
tests/data/manifest.json "conventions"), independent of attnx's C++ code."""
import numpy as np


def softmax_rows(s, allowed=None):
    """Row softmax of s; entries with allowed == False are -inf; a row with none allowed is 0."""
    s = np.array(s, dtype=np.float64)
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    mx = np.max(s, axis=1, keepdims=True)
    empty = ~np.isfinite(mx)
    mx = np.where(empty, 0.0, mx)
    e = np.exp(s - mx)
    if allowed is not None:
        e = np.where(allowed, e, 0.0)
    z = e.sum(axis=1, keepdims=True)
    return np.where(z > 0, e / np.where(z > 0, z, 1.0), 0.0)


def allowed_mask(n_q, n_k, causal=False, key_padding_mask=None):
    allowed = np.ones((n_q, n_k), dtype=bool)
    if causal:  # bottom-right aligned: query i sees keys j <= i + n_k - n_q
        i = np.arange(n_q)[:, None]
        j = np.arange(n_k)[None, :]
        allowed &= j <= i + (n_k - n_q)
    if key_padding_mask is not None:
        allowed &= ~np.asarray(key_padding_mask, dtype=bool)[None, :]
    return allowed


def exact(q, k, v, scale=None, causal=False, key_padding_mask=None, allowed=None):
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    s = (1.0 / np.sqrt(q.shape[1])) if scale is None else scale
    a = allowed_mask(q.shape[0], k.shape[0], causal, key_padding_mask)
    if allowed is not None:
        a &= allowed
    return softmax_rows(s * (q @ k.T), a) @ v


def segment_means(x, m):
    """Means of m contiguous segments of the rows; the first n mod m segments one row longer."""
    n = x.shape[0]
    base, extra = divmod(n, m)
    out, start = [], 0
    for i in range(m):
        size = base + (1 if i < extra else 0)
        out.append(x[start:start + size].mean(axis=0))
        start += size
    return np.array(out)


def iterative_pinv(a, iterations):
    """Razavi et al.: Z0 = A^T / max column sum, Z <- 1/4 Z (13 I - AZ (15 I - AZ (7 I - AZ)))."""
    eye = np.eye(a.shape[0])
    z = a.T / np.max(np.sum(np.abs(a), axis=0))
    for _ in range(iterations):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


def nystrom(q, k, v, m, pinv="iterative", iterations=6, scale=None):
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    s = (1.0 / np.sqrt(q.shape[1])) if scale is None else scale
    ql, kl = segment_means(q, m), segment_means(k, m)
    f = softmax_rows(s * (q @ kl.T))
    a = softmax_rows(s * (ql @ kl.T))
    b = softmax_rows(s * (ql @ k.T))
    z = np.linalg.pinv(a, rcond=1e-15) if pinv == "exact" else iterative_pinv(a, iterations)
    return f @ (z @ (b @ v))


def linformer(q, k, v, e, f, scale=None, key_padding_mask=None):
    q, k, v, e, f = (np.asarray(x, dtype=np.float64) for x in (q, k, v, e, f))
    if key_padding_mask is not None:  # padded keys are zeroed before the projection
        keep = ~np.asarray(key_padding_mask, dtype=bool)
        k = k * keep[:, None]
        v = v * keep[:, None]
    s = (1.0 / np.sqrt(q.shape[1])) if scale is None else scale
    return softmax_rows(s * (q @ (e @ k).T)) @ (f @ v)


def rel_fro(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def inputs(n_q, d, n_k=None, d_v=None, seed=0, spread=2.0, dtype=np.float64):
    """Q, K, V from N(0, 1), Q scaled by `spread` so that softmax rows are peaked (STYLE rule 18)."""
    rng = np.random.default_rng(seed)
    n_k = n_q if n_k is None else n_k
    d_v = d if d_v is None else d_v
    q = spread * rng.standard_normal((n_q, d))
    k = rng.standard_normal((n_k, d))
    v = rng.standard_normal((n_k, d_v))
    return q.astype(dtype), k.astype(dtype), v.astype(dtype)


def elu_plus_one(x):
    """φ(x) = elu(x) + 1 (Katharopoulos et al. 2020, eq. 7)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def favor_features(x, w, scale, stabilizer):
    """FAVOR+ (Choromanski et al. 2021, eq. 7) as attnx defines it: x = sqrt(scale)·q,
    φ(x) = (exp(Wx - |x|²/2) + stabilizer·exp(max_f (Wx)_f - |x|²/2)) / sqrt(m)."""
    x = np.sqrt(scale) * np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    wx = x @ w.T
    half = 0.5 * np.sum(x * x, axis=1, keepdims=True)
    return (np.exp(wx - half) + stabilizer * np.exp(wx.max(axis=1, keepdims=True) - half)) / np.sqrt(w.shape[0])


def feature_attention(phi_q, phi_k, v, causal=False, key_padding_mask=None):
    """The dense form of feature-map attention: (φ(Q) φ(K)ᵀ ∘ allowed) [V | 1], row-normalised
    (eps -> 0; a row that sees no key is 0)."""
    a = phi_q @ phi_k.T * allowed_mask(phi_q.shape[0], phi_k.shape[0], causal, key_padding_mask)
    num = a @ np.asarray(v, dtype=np.float64)
    den = a.sum(axis=1, keepdims=True)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
