"""estimate_error: the sampled estimate of a mechanism's relative error against exact attention."""
import numpy as np
import pytest

import attnx
from reference import exact, inputs, rel_fro


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_rows_sampled_is_the_exact_error(dtype):
    q, k, v = inputs(200, 16, seed=60, spread=1.0, dtype=dtype)
    mech = attnx.Nystrom(num_landmarks=8)
    want = rel_fro(mech(q, k, v), exact(q, k, v))  # NumPy: the whole error, in double
    e = attnx.estimate_error(mech, q, k, v, samples=200)
    # every row is sampled (f = 1): the ratio estimator is the error itself, the interval has
    # zero width; the exact rows are attnx's float kernel against NumPy's double: 1e-5 in float
    assert e.samples == 200 and e.population == 200
    assert e.rel_fro == pytest.approx(want, rel=1e-9 if dtype == np.float64 else 1e-4)
    assert e.ci_low == e.ci_high == e.rel_fro


def test_sampled_estimate_and_interval():
    q, k, v = inputs(1024, 32, seed=61, spread=1.0)
    for mech in (attnx.BigBird(block=32, random=1), attnx.Linformer(attnx.LinformerProjection.gaussian(
            32, 1024, seed=2, dtype=np.float64)), attnx.Exact(kernel="materialized")):
        truth = rel_fro(mech(q, k, v), exact(q, k, v))
        e = attnx.estimate_error(mech, q, k, v, samples=128, seed=3)
        assert e.samples == 128 and e.population == 1024
        assert e.ci_low <= e.rel_fro <= e.ci_high
        # the 95 % interval covers the truth for this seed (checked once; seeded, deterministic)
        assert e.ci_low <= truth * (1 + 1e-9) and truth <= e.ci_high * (1 + 1e-9) + 1e-12, (mech, truth, e)
        again = attnx.estimate_error(mech, q, k, v, samples=128, seed=3, approx=mech(q, k, v))
        assert again.rel_fro == e.rel_fro and again.ci_high == e.ci_high


def test_estimate_errors():
    q, k, v = inputs(64, 8, seed=62)
    with pytest.raises(TypeError, match="mechanism must be an attnx mechanism value"):
        attnx.estimate_error("nystrom", q, k, v)
    with pytest.raises(TypeError, match="Linformer projection has dtype float32 but q has float64"):
        attnx.estimate_error(attnx.Linformer(attnx.LinformerProjection.gaussian(4, 64, seed=1)), q, k, v)
    with pytest.raises(ValueError, match="attnx::estimate_error: .*samples"):
        attnx.estimate_error(attnx.Exact(), q, k, v, samples=1)
    with pytest.raises(ValueError, match="confidence"):
        attnx.estimate_error(attnx.Exact(), q, k, v, confidence=1.5)
    with pytest.raises(TypeError, match="approx has dtype float32 but q has float64"):
        attnx.estimate_error(attnx.Exact(), q, k, v, approx=v.astype(np.float32))
    with pytest.raises(ValueError, match="approx is 64x4"):
        attnx.estimate_error(attnx.Exact(), q, k, v, approx=v[:, :4])
