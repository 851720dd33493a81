"""Several Python threads calling attnx at once (the GIL is released during the computation) get
exactly the results of serial calls."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import attnx
from reference import inputs


def test_concurrent_calls_match_serial():
    jobs = []
    for i in range(12):
        dtype = np.float32 if i % 2 else np.float64
        q, k, v = inputs(256 + 8 * i, 32, seed=40 + i, dtype=dtype)
        fn = [
            lambda q=q, k=k, v=v: attnx.exact_attention(q, k, v, causal=True),
            lambda q=q, k=k, v=v: attnx.nystrom_attention(q, k, v, num_landmarks=16),
            lambda q=q, k=k, v=v: attnx.bigbird_attention(q, k, v, block=32, random=1),
            lambda q=q, k=k, v=v: attnx.linformer_attention(q, k, v, np.eye(16, q.shape[0], dtype=q.dtype)),
        ][i % 4]
        jobs.append(fn)
    serial = [fn() for fn in jobs]
    for _ in range(3):
        with ThreadPoolExecutor(max_workers=6) as pool:
            parallel = list(pool.map(lambda fn: fn(), jobs * 2))
        for i, got in enumerate(parallel):
            assert np.array_equal(got, serial[i % len(jobs)]), i


def test_errors_in_threads_do_not_disturb_others():
    q, k, v = inputs(64, 8, seed=50)
    want = attnx.exact_attention(q, k, v)
    failures, results = [], []

    def worker(i):
        try:
            if i % 2:
                attnx.nystrom_attention(q, k, v, num_landmarks=1000)
            else:
                results.append(attnx.exact_attention(q, k, v))
        except ValueError as e:
            failures.append(str(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(failures) == 8 and all("num_landmarks" in f for f in failures)
    assert len(results) == 8 and all(np.array_equal(r, want) for r in results)


def test_threads_follow_omp_num_threads():
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1")
    code = "import attnx, numpy as np; x = np.ones((300, 8)); attnx.exact_attention(x, x, x); print(attnx.max_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"
