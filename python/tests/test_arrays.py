"""dtype and memory-layout round trips: every layout of the same values gives the same result."""
import numpy as np
import pytest

import attnx
from reference import exact, inputs, rel_fro


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_order_of_results(dtype):
    q, k, v = inputs(33, 8, n_k=20, d_v=5, seed=20, dtype=dtype)
    out = attnx.exact_attention(q, k, v)
    assert out.dtype == dtype and out.shape == (33, 5)
    assert out.flags.f_contiguous and out.flags.writeable and out.flags.owndata
    assert rel_fro(out, exact(q, k, v)) <= (1e-12 if dtype == np.float64 else 1e-5)
    # a result passed on as an input (Fortran order: read in place)
    again = attnx.exact_attention(out, out, out)
    assert rel_fro(again, exact(out, out, out)) <= (1e-12 if dtype == np.float64 else 1e-5)


def layouts(x):
    """The same values in C order, Fortran order, as a strided view, reversed views and unaligned."""
    yield "C", np.ascontiguousarray(x)
    yield "F", np.asfortranarray(x)
    wide = np.zeros((x.shape[0] * 2, x.shape[1] * 3), dtype=x.dtype)
    wide[::2, ::3] = x
    yield "strided", wide[::2, ::3]
    yield "column-strided F", np.asfortranarray(np.zeros((x.shape[0] + 3, x.shape[1]), dtype=x.dtype))[:0]
    rev = np.ascontiguousarray(x[::-1, ::-1])
    yield "negative strides", rev[::-1, ::-1]
    buf = bytearray(x.nbytes + 1)
    unaligned = np.ndarray(x.shape, dtype=x.dtype, buffer=buf, offset=1, order="F")
    unaligned[...] = x
    assert not unaligned.flags.aligned
    yield "unaligned", unaligned
    yield "sub-block of a Fortran array", np.asfortranarray(np.vstack([x, x]))[: x.shape[0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_layout_gives_the_same_result(dtype):
    q, k, v = inputs(24, 6, n_k=30, d_v=4, seed=21, dtype=dtype)
    want = attnx.exact_attention(q, k, v)
    nys = attnx.nystrom_attention(q, k, v, num_landmarks=6)
    for (name_q, lq), (name_k, lk), (name_v, lv) in zip(layouts(q), layouts(k), layouts(v)):
        if lq.size == 0:
            continue
        assert np.array_equal(lq, q) and np.array_equal(lk, k) and np.array_equal(lv, v)
        # The kernel reads the same column-major values whatever the NumPy layout, but Eigen's
        # vectorised sums peel differently with the alignment of each column's start (a view into
        # a Fortran array read in place): last-bit differences, a few eps.
        eps = np.finfo(dtype).eps
        assert rel_fro(attnx.exact_attention(lq, lk, lv), want) <= 10 * eps, name_q
        assert rel_fro(attnx.nystrom_attention(lq, lk, lv, num_landmarks=6), nys) <= 100 * eps, name_q


def test_broadcast_and_single_row_or_column():
    q, k, v = inputs(10, 4, seed=22)
    row = np.broadcast_to(q[:1], (10, 4))  # stride 0 along the rows
    assert np.array_equal(attnx.exact_attention(row, k, v), attnx.exact_attention(np.array(row), k, v))
    one = attnx.exact_attention(q[:1], k, v)  # a single query
    assert one.shape == (1, 4) and rel_fro(one, exact(q[:1], k, v)) <= 1e-12
    col = attnx.exact_attention(q[:, :1], k[:, :1], v[:, :1])  # d = d_v = 1
    assert rel_fro(col, exact(q[:, :1], k[:, :1], v[:, :1])) <= 1e-12


def test_array_likes_and_inputs_untouched():
    q, k, v = inputs(6, 3, seed=23)
    got = attnx.exact_attention(q.tolist(), k.tolist(), v.tolist())  # lists become float64 arrays
    assert got.dtype == np.float64 and rel_fro(got, exact(q, k, v)) <= 1e-12
    before = [x.copy() for x in (q, k, v)]
    attnx.nystrom_attention(q, k, v, num_landmarks=3)
    assert all(np.array_equal(a, b) for a, b in zip(before, (q, k, v)))


def test_masks_accept_any_bool_layout():
    q, k, v = inputs(12, 4, seed=24)
    mask = np.zeros(24, dtype=bool)
    mask[::2][[1, 4]] = True
    want = attnx.exact_attention(q, k, v, key_padding_mask=np.ascontiguousarray(mask[::2]))
    assert np.array_equal(attnx.exact_attention(q, k, v, key_padding_mask=mask[::2]), want)
    assert np.array_equal(attnx.exact_attention(q, k, v, key_padding_mask=list(mask[::2])), want)


def test_fortran_inputs_are_read_in_place():
    """NumPy reports its allocations to tracemalloc, and the module allocates its conversion
    buffers and results through NumPy: a call on Fortran-ordered inputs allocates only the result,
    one on C-ordered inputs a column-major copy of each of Q, K, V besides."""
    import tracemalloc

    q, k, v = inputs(2048, 64, seed=25)
    qf, kf, vf = (np.asfortranarray(x) for x in (q, k, v))
    size = q.nbytes  # 1 MiB each, and the output
    tracemalloc.start()
    try:
        for args, low, high in (((qf, kf, vf), size, 1.1 * size), ((q, k, v), 4 * size, 4.1 * size)):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            out = attnx.nystrom_attention(*args, num_landmarks=16)
            peak = tracemalloc.get_traced_memory()[1] - before
            assert low <= peak <= high, (args[0].flags.f_contiguous, peak / size)
            del out
    finally:
        tracemalloc.stop()
