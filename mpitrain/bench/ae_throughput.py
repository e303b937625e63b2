"""Autoencoder training throughput: time per epoch, ours (numpy BLAS + kernels) vs PyTorch CPU.

Same network, batch, dtype (float32), loss (sigmoid cross-entropy, summed over pixels, mean
over the batch), optimizer (SGD lr 0.1, momentum 0.9) and thread count, on MNIST rows (ours
as mpitrain runs it: single-threaded BLAS calls, GEMMs split over the threads): one
784→1000→784 layer, and the full unrolled 784-1000-500-250-30-250-500-1000-784 autoencoder.
Each configuration runs in its own process (thread counts are fixed at start-up): one
warm-up epoch, then the median of R timed epochs. PyTorch is optional: installed in this
environment, or in a separate one named by `--torch-python PYTHON` (or the environment
variable MPITRAIN_TORCH_PYTHON), e.g. a venv with `pip install --no-deps torch==2.13.0`
plus numpy and torch's small pure-Python dependencies; that interpreter needs only numpy and
torch (the rows reach it as a .npy file). Without PyTorch only our times are reported.
`--profile` adds where our deep epoch's time goes at 1 thread: GEMMs, each kernel, the rest.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from .common import table, write_report

NETS = {"layer": [784, 1000], "deep": [784, 1000, 500, 250, 30]}


def _save_rows(path, rows, npy):
    """The first `rows` training rows of the HDF5 set `path` as float32, into `npy`."""
    import h5py
    import numpy as np
    with h5py.File(path, "r") as f:
        np.save(npy, np.ascontiguousarray(f["train/X"][:rows], dtype=np.float32))


class _Clock:
    """Seconds spent in named calls (the --profile breakdown of our epoch)."""

    def __init__(self):
        self.t = {}

    def wrap(self, label, fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            self.t[label] = self.t.get(label, 0.0) + time.perf_counter() - t0
            return out
        return timed


class _Timed:
    """A module whose functions `names` ({name: label}) run through a _Clock."""

    def __init__(self, mod, clock, names):
        self._mod = mod
        self._fns = {n: clock.wrap(label, getattr(mod, n)) for n, label in names.items()}

    def __getattr__(self, name):
        return self._fns.get(name) or getattr(self._mod, name)


PROFILE = {"matmul": "GEMMs (numpy/OpenBLAS)", "bias_act": "bias + activation",
           "sigmoid_xent": "output sigmoid + loss + its gradient",
           "act_backward": "activation derivative", "sum": "bias gradients (numpy sum)",
           "momentum_step": "momentum update"}


def _ours(X, dims, batch, epochs, clock=None):
    """Our epochs; with a _Clock, the network's GEMMs and kernels are timed (the last
    epoch's seconds per call kind are left in clock.t)."""
    import numpy as np
    from ..models import autoencoder as AE
    from .._kernels import ae_fast as K
    if clock is not None:
        AE.np = _Timed(np, clock, {n: PROFILE[n] for n in ("matmul", "sum")})
        AE.K = K = _Timed(K, clock, {n: PROFILE[n] for n in (
            "bias_act", "sigmoid_xent", "act_backward", "momentum_step")})
    Kn = len(dims) - 1
    net = AE.stack_net(Kn, "sigmoid", "xent", False)
    rng = np.random.default_rng(0)
    P = {}
    for k in range(1, Kn + 1):
        P[f"W{k}"] = AE.glorot(rng, dims[k - 1], dims[k], "sigmoid")
        P[f"b{k}"] = np.zeros(dims[k], np.float32)
        P[f"V{k}"] = AE.glorot(rng, dims[k], dims[k - 1], "sigmoid")
        P[f"c{k}"] = np.zeros(dims[k - 1], np.float32)
    names = sorted(P)
    G = {n: np.empty_like(P[n]) for n in names}
    V = {n: np.zeros_like(P[n]) for n in names}
    tset = frozenset(names)
    lr, mu, wd = np.float32(0.1), np.float32(0.9), np.float32(0.0)
    times = []
    for e in range(epochs):
        perm = rng.permutation(X.shape[0])
        if clock is not None:
            clock.t.clear()
        t0 = time.perf_counter()
        for s in range(0, X.shape[0], batch):
            xb = X[perm[s:s + batch]]
            net.loss_grad(P, xb, xb, G, tset, 1.0 / xb.shape[0])
            for n in names:
                K.momentum_step(P[n].reshape(-1), V[n].reshape(-1), G[n].reshape(-1), lr, mu,
                                wd)
        times.append(time.perf_counter() - t0)
    return times


def _torch(X, dims, batch, epochs, threads):
    import numpy as np
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layers = []
    for k in range(1, len(dims)):
        layers += [torch.nn.Linear(dims[k - 1], dims[k]), torch.nn.Sigmoid()]
    for k in range(len(dims) - 1, 0, -1):
        layers += [torch.nn.Linear(dims[k], dims[k - 1]), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers[:-1])  # logits out; the loss applies the sigmoid
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    lossf = torch.nn.BCEWithLogitsLoss(reduction="sum")
    Xt = torch.from_numpy(X)
    rng = np.random.default_rng(0)
    times = []
    for e in range(epochs):
        perm = torch.from_numpy(rng.permutation(X.shape[0]))
        t0 = time.perf_counter()
        for s in range(0, X.shape[0], batch):
            xb = Xt[perm[s:s + batch]]
            opt.zero_grad(set_to_none=False)
            loss = lossf(model(xb), xb) / xb.shape[0]
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def worker(spec):
    import numpy as np
    impl, net, threads, npy, batch, epochs = spec.split(",")
    X = np.load(npy)
    dims = NETS[net]
    out = {}
    if impl in ("ours", "profile"):
        from threadpoolctl import threadpool_limits
        from .._kernels import omp
        from ..models import autoencoder as AE
        omp.set_num_threads(int(threads))
        threadpool_limits(1, "blas")  # as mpitrain runs the autoencoders (AEBase.BLAS_THREADS)
        AE.set_gemm_threads(int(threads))
        clock = _Clock() if impl == "profile" else None
        out["times"] = _ours(X, dims, int(batch), int(epochs), clock)
        if clock is not None:
            out["profile"] = clock.t
    else:
        out["times"] = _torch(X, dims, int(batch), int(epochs), int(threads))
    print(json.dumps(out))


def _torch_version(python):
    """PyTorch's version under the interpreter `python`, or None."""
    res = subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                         capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else None


def main(argv):
    ap = argparse.ArgumentParser(prog="mpitrain bench ae-throughput", description=__doc__)
    ap.add_argument("--data", default="data/mnist.h5")
    ap.add_argument("--out", default="bench-out/ae-throughput")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="2000 rows, 2 timed epochs")
    ap.add_argument("--torch-python", default=os.environ.get("MPITRAIN_TORCH_PYTHON",
                                                             sys.executable),
                    help="the Python interpreter that has PyTorch (default: this one, or "
                    "$MPITRAIN_TORCH_PYTHON)")
    ap.add_argument("--profile", action="store_true",
                    help="also time the GEMMs and kernels of our deep net at 1 thread")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.worker)
        return 0
    if a.quick:
        a.rows, a.repeats = min(a.rows, 2000), 2
    torch_version = _torch_version(a.torch_python)
    os.makedirs(a.out, exist_ok=True)
    npy = os.path.abspath(os.path.join(a.out, "rows.npy"))
    _save_rows(a.data, a.rows, npy)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run(impl, net, th):
        """One worker process: its timed epochs' results (the warm-up dropped)."""
        env = dict(os.environ, OMP_NUM_THREADS=str(th), OPENBLAS_NUM_THREADS=str(th),
                   MKL_NUM_THREADS=str(th), OMP_WAIT_POLICY="PASSIVE")
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")]
                                                      if p])  # this mpitrain, either Python
        spec = ",".join(map(str, [impl, net, th, npy, a.batch, a.repeats + 1]))
        res = subprocess.run([a.torch_python if impl == "torch" else sys.executable, "-c",
                              "import sys; from mpitrain.bench.ae_throughput import worker; "
                              "worker(sys.argv[1])", spec], env=env, capture_output=True,
                             text=True)
        if res.returncode:
            sys.stderr.write(res.stderr[-2000:])
            raise SystemExit(1)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out["times"] = out["times"][1:]
        return out

    results, rows = {}, []
    for net in NETS:
        for th in [int(t) for t in a.threads.split(",")]:
            got = {impl: statistics.median(run(impl, net, th)["times"])
                   for impl in ["ours"] + (["torch"] if torch_version else [])}
            results[f"{net}-t{th}"] = got
            ratio = got["ours"] / got["torch"] if "torch" in got else float("nan")
            rows.append([net, th, got["ours"], got.get("torch", float("nan")), ratio])
    prof = None
    if a.profile:  # where our deep epoch's time goes at 1 thread (its last epoch, timed)
        out = run("profile", "deep", 1)
        total = out["times"][-1]
        prof = dict(out["profile"], total=total)
        prof_rows = [[k, v, 100 * v / total] for k, v in sorted(
            out["profile"].items(), key=lambda kv: -kv[1])]
        rest = total - sum(out["profile"].values())
        prof_rows.append(["the rest (minibatch gather, Python)", rest, 100 * rest / total])
    load = os.getloadavg()
    tab = table(["net", "threads", "ours s/epoch", "PyTorch s/epoch", "ours / PyTorch"], rows)
    secs = [f"{a.rows} MNIST rows per epoch, batch {a.batch}, float32, median of {a.repeats} "
            f"epochs after one warm-up; layer = 784→1000→784, deep = 784-1000-500-250-30 "
            f"unrolled (8 weight matrices). Both run with OMP_WAIT_POLICY=PASSIVE: with the "
            "default spinning OpenMP threads our kernels' threads and OpenBLAS's threads "
            "fight over the cores (up to 10x slower on a loaded 2-core box). OpenBLAS "
            f"kernels: OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')} (as "
            f"inherited). Load average at the end: {load}.",
            tab]
    if prof:
        secs += [f"Where our deep epoch's time goes at 1 thread (`--profile`: one more run, "
                 f"every GEMM and kernel call timed; the last of its epochs, {prof['total']:.3g} "
                 "s with the timers):",
                 table(["part", "s/epoch", "%"], prof_rows)]
    if torch_version:
        secs.insert(1, f"PyTorch {torch_version} (CPU).")
    else:
        secs.append(f"PyTorch is not importable by {a.torch_python}: see --torch-python.")
    os.remove(npy)
    print(write_report(a.out, "Autoencoder throughput: ours vs PyTorch CPU", secs,
                       {"results": results, "rows": a.rows, "batch": a.batch, "load": load,
                        "torch": torch_version, "profile": prof}))
    print(tab)
    return 0
