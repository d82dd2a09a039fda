"""numpy baselines for bench/fedavg.ts: the same weighted average of K float32 updates of P
parameters, timed (only the computation) and checked against a float64 reference.

    python3 fedavg_numpy.py K P SECONDS METHOD[,METHOD…]    (average, ufunc, blas)
    python3 fedavg_numpy.py K P --serve

Prints one JSON document: numpy's version, the seconds of each timed run per method, and for
blas the OpenBLAS core type and thread count it ran with (read from the loaded library).

With --serve (bench/fedavg-targets.ts) it makes the data once, prints one JSON line (numpy's
version, OpenBLAS's core), then answers each line "METHOD N" on stdin with one JSON line: the
seconds of N back-to-back runs of METHOD. It ends when stdin closes.
"""
import ctypes
import json
import sys
import time

import numpy as np

K, P = int(sys.argv[1]), int(sys.argv[2])
serve = sys.argv[3] == "--serve"
rng = np.random.default_rng(0)
X = rng.random((K, P), dtype=np.float32)
w = np.arange(1, K + 1, dtype=np.float32)
wn = (w / w.sum()).astype(np.float32)
out = np.empty(P, dtype=np.float32)
tmp = np.empty(P, dtype=np.float32)


def average():
    return np.average(X, axis=0, weights=w)


def ufunc():
    np.multiply(X[0], wn[0], out=out)
    for k in range(1, K):
        np.multiply(X[k], wn[k], out=tmp)
        np.add(out, tmp, out=out)
    return out


def blas():
    return wn @ X


def openblas():
    """The core type and threads of the OpenBLAS that numpy loaded (from /proc/self/maps)."""
    with open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if "blas" in line and "/" in line})
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return {
                "library": path,
                "core": lib.openblas_get_corename().decode(),
                "threads": lib.openblas_get_num_threads(),
                "config": lib.openblas_get_config().decode(),
            }
        except (OSError, AttributeError):
            continue
    return {"library": paths, "core": "unknown"}


ref = (w.astype(np.float64) @ X[:, :1000].astype(np.float64)) / w.sum(dtype=np.float64)
METHODS = {"average": average, "ufunc": ufunc, "blas": blas}


def checked(name):
    """The method, after one run whose answer matches the float64 reference."""
    fn = METHODS[name]
    r = fn()
    err = float(np.max(np.abs(r[:1000].astype(np.float64) - ref)))
    assert err < 1e-5, (name, err)
    return fn


if serve:
    for name in ("ufunc", "blas"):
        checked(name)
    print(json.dumps({"numpy": np.__version__, "openblas": openblas()}), flush=True)
    for line in sys.stdin:
        name, n = line.split()
        fn = METHODS[name]
        ts = []
        for _ in range(int(n)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        print(json.dumps(ts), flush=True)
    sys.exit(0)

seconds = float(sys.argv[3])
res = {"numpy": np.__version__, "times": {}}
for name in sys.argv[4].split(","):
    fn = checked(name)
    ts = []
    until = time.perf_counter() + seconds
    while len(ts) < 7 and (len(ts) < 2 or time.perf_counter() < until):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    res["times"][name] = ts
    if name == "blas":
        res["openblas"] = openblas()
print(json.dumps(res))
