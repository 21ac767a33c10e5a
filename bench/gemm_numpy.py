#!/usr/bin/env python3
"""Anchor for `frugal bench gemm`: numpy float32 matmul GFLOP/s at the same shapes, two threads.

Run as:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 bench/gemm_numpy.py [--out FILE]
Shapes are (m, k, n): C[m, n] = A[m, k] @ B[k, n]; (1, 4096, 14336) is `W @ x` with W [14336, 4096].
Prints one line per shape and writes {"results": [{"m","k","n","backend","gflops","seconds"}], "blas": ...}.
"""
import argparse
import json
import os
import sys
import time

THREADS = int(os.environ.get("FRUGAL_THREADS", "2"))
# Must be set before numpy loads OpenBLAS; threadpoolctl below also enforces it.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(THREADS)

import numpy as np  # noqa: E402

SHAPES = [(128, 128, 128), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
          (256, 512, 512), (64, 512, 2048), (1, 4096, 14336)]


def median_time(fn, min_time):
    fn()  # warm-up
    times, total = [], 0.0
    while total < min_time or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    times.sort()
    h = len(times) // 2
    return times[h] if len(times) % 2 else 0.5 * (times[h - 1] + times[h])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/gemm_numpy.json", help="JSON output path")
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds of repeats per shape")
    ap.add_argument("--quiet", action="store_true", help="print only the timings")
    ap.add_argument("--shapes", default=None,
                    help="comma-separated MxKxN list (default: the acceptance shapes), e.g. 512x512x512,1x4096x14336")
    args = ap.parse_args()

    blas_info = []
    limiter = None
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
        limiter = threadpool_limits(limits=THREADS)
        blas_info = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
                     for d in threadpool_info()]
    except ImportError:
        print("threadpoolctl not installed (pip install threadpoolctl): BLAS not identified, "
              "threads only set through OPENBLAS_NUM_THREADS", file=sys.stderr)
    for d in blas_info if not args.quiet else []:
        print(f"BLAS: {d['internal_api']} {d['version']} arch={d['architecture']} threads={d['num_threads']}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var}={os.environ[var]} is set; it can slow numpy's OpenBLAS", file=sys.stderr)

    rng = np.random.default_rng(0)
    results = []
    shapes = SHAPES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    for m, k, n in shapes:
        if m == 1:
            w = rng.uniform(-1, 1, (n, k)).astype(np.float32)
            x = rng.uniform(-1, 1, k).astype(np.float32)
            fn = lambda w=w, x=x: w @ x  # noqa: E731
        else:
            a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
            b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
            c = np.empty((m, n), np.float32)
            fn = lambda a=a, b=b, c=c: np.matmul(a, b, out=c)  # noqa: E731
        s = median_time(fn, args.min_time)
        gf = 2.0 * m * n * k / s / 1e9
        results.append({"m": m, "k": k, "n": n, "backend": "numpy", "gflops": gf, "seconds": s})
        print(f"{m}x{k}x{n}: {gf:8.1f} GFLOP/s  ({s * 1e3:.3f} ms)")
    if limiter is not None:
        limiter.restore_original_limits()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"results": results, "blas": blas_info, "threads": THREADS,
                   "numpy": np.__version__}, f, indent=1)


if __name__ == "__main__":
    main()
