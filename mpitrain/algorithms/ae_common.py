"""Shared machinery of the autoencoder algorithms (sae-greedy, slp, dae-stacked, dae-gradual).

- parameter blocks: each layer's parameters are views into one flat float32 array, so a
  layer travels in one Bcast (SLP) and is saved as one dataset;
- `Trainer`: minibatch SGD with momentum on one network, synchronous data-parallel over a
  (sub-)World: global batch b of epoch e is rows perm_e[bB:(b+1)B] of a permutation drawn
  from the stream ("perm", key, e); each rank computes the gradient of its rows of that batch
  (scaled by 1/B), one Allreduce(SUM) of all gradients, identical update everywhere. Noise of
  batch b comes from the stream ("noise", key, e, b) drawn for the whole global batch, so the
  result does not depend on the number of ranks beyond float32 summation order;
- `AEBase`: schema, setup, evaluation (unrolled reconstruction error, fine-tuned test error),
  fine-tuning phase, checkpoint helpers.
"""
import collections
import math
import os
import time

import numpy as np

from .. import data as datamod
from ..schema import Field
from ..errors import JobError
from ..models import autoencoder as AE
from .._kernels import ae_fast as K
from ..state import Array, Float, Int, Str
from .base import Algorithm

F32 = np.float32
FT_KEY = 100000  # stream key of the fine-tuning phase
RFT_KEY = 200000  # stream key of the reconstruction fine-tuning phase
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8
RANK_PHASES = ("train", "allreduce", "regen", "exchange", "wait", "eval")  # rank_times()
PCA_MAX_D = 4096  # the PCA baseline needs a d × d covariance: skipped above this width
PCA_EPS = (1e-4, 1e-3, 1e-2, 3e-2)  # cross-entropy clipping of PCA/mean, chosen on train rows

MODEL_SCHEMA = {
    "layers": Field("list[int]", [256, 64], "hidden layer sizes, bottom to top (the input "
                    "width comes from the data)"),
    "activation": Field(str, "sigmoid", "hidden units", choices=["sigmoid", "relu", "tanh"]),
    "loss": Field(str, "xent", "reconstruction loss of x: cross-entropy (sigmoid output, data "
                  "in [0,1]) or squared error (linear output)", choices=["xent", "squared"]),
    "tied": Field(bool, False, "decoder weights = encoder weights transposed"),
    "noise": Field(str, "none", "input corruption while training", choices=["none", "mask",
                                                                              "gauss"]),
    "noise_level": Field(float, 0.0, "masking probability, or Gaussian standard deviation",
                         min=0.0),
}

SOLVER_SCHEMA = {
    "epochs": Field(int, 10, "epochs per layer (per stage)", min=1),
    "batch": Field(int, 100, "global minibatch size (split over the ranks)", min=1),
    "lr": Field(float, 0.02, "SGD learning rate of pre-training (0.1 makes sigmoid/"
                "cross-entropy stacks worse than the mean image on MNIST)", min=0.0),
    "momentum": Field(float, 0.7, "heavy-ball momentum of pre-training (0.9 saturates "
                      "sigmoid units: greedy MNIST stacks then end near the mean image)",
                      min=0.0),
    "finetune_momentum": Field(float, 0.9, "heavy-ball momentum of the softmax fine-tuning "
                               "and of the reconstruction fine-tuning with "
                               "recon_finetune_optimizer = \"momentum\"", min=0.0),
    "weight_decay": Field(float, 0.0, "L2 weight decay added to the gradient", min=0.0),
    "recon_finetune_epochs": Field(int, 20, "end-to-end reconstruction fine-tuning epochs of "
                                   "the whole unrolled stack after pre-training (Hinton & "
                                   "Salakhutdinov 2006), clean input; 0 = none", min=0),
    "recon_finetune_lr": Field(float, 0.001, "learning rate of the reconstruction "
                               "fine-tuning", min=0.0),
    "recon_finetune_optimizer": Field(str, "adam", "optimizer of the reconstruction "
                                      "fine-tuning: Adam (β 0.9, 0.999) or heavy-ball momentum "
                                      "([solver] finetune_momentum)",
                                      choices=["adam", "momentum"]),
    "val_fraction": Field(float, 0.0, "hold out this fraction of the training rows (the last "
                          "ones) as a validation split: no phase trains on them, and both "
                          "fine-tuning phases stop early on it (0 = no split: fine-tuning "
                          "runs all its epochs)", min=0.0),
    "patience": Field(int, 3, "with a validation split, a fine-tuning phase stops after this "
                      "many epochs without a better validation score and keeps the best "
                      "epoch's parameters", min=1),
    "finetune_epochs": Field(int, 0, "supervised fine-tuning epochs (softmax on the top code) "
                             "after pre-training; 0 = none", min=0),
    "finetune_lr": Field(float, 0.1, "fine-tuning learning rate", min=0.0),
    "eval_every": Field(int, 1, "evaluate the unrolled test reconstruction every N epochs "
                        "(rounds); 0 = only at the end of each layer", min=0,
                        affects_result=False),
    "eval_rows": Field(int, 0, "evaluate on the first N test rows (0 = all)", min=0,
                       affects_result=False),
}


def with_defaults(schema, **defaults):
    out = dict(schema)
    for k, v in defaults.items():
        f = out[k]
        out[k] = Field(f.type, v, f.help, f.choices, f.min, f.affects_result)
    return out


class Block:
    """Named float32 parameters as views into one flat array (`flat`: an existing one to
    use, e.g. a momentum buffer the algorithm owns and checkpoints)."""

    def __init__(self, spec, flat=None):
        self.names = [n for n, _ in spec]
        size = sum(int(np.prod(s)) for _, s in spec)
        self.flat = np.zeros(size, F32) if flat is None else flat
        assert self.flat.shape == (size,) and self.flat.dtype == F32
        self.views = {}
        off = 0
        for n, s in spec:
            m = int(np.prod(s))
            self.views[n] = self.flat[off:off + m].reshape(s)
            off += m


class Trainer:
    """Momentum SGD on `net` for the parameters `names`, data-parallel over `world`.

    X: this rank's rows [lo, lo + len(X)) of the n rows the batches are drawn from. The
    momentum lives in alg.mom[mom] (declared state: see AEBase.momentum). lr and mu default
    to pre-training's [solver] lr and momentum."""

    def __init__(self, alg, key, net, names, world, X, lo, n, labels=None, lr=None,
                 noise=True, mom=None, adam=False, mu=None):
        s = alg.ctx.solver
        self.alg, self.ctx, self.P = alg, alg.ctx, alg.P
        self.key = tuple(key)
        self.net, self.names, self.world = net, list(names), world
        self.tset = frozenset(names)
        self.X, self.lo, self.n, self.labels = X, lo, n, labels
        self.B = s["batch"]
        self.lr = F32(s["lr"] if lr is None else lr)
        self.mu, self.wd = F32(s["momentum"] if mu is None else mu), F32(s["weight_decay"])
        m = alg.ctx.model
        self.noise = (m["noise"], m["noise_level"]) if noise else ("none", 0.0)
        self.grads = Block([(nm, self.P[nm].shape) for nm in self.names])
        self.mom = Block([(nm, self.P[nm].shape) for nm in self.names],
                         None if mom is None else alg.momentum(mom, self.names))
        # Adam: mom holds the first moments, mom2 the second (alg.mom[mom + "2"]); the step
        # count is derived from (epoch, batch), so it needs no state of its own
        self.mom2 = None if not adam else Block(
            [(nm, self.P[nm].shape) for nm in self.names],
            None if mom is None else alg.momentum(mom + "2", self.names))
        self._perm_epoch, self._perm = None, None
        self._xin = None

    @property
    def batches(self):
        return math.ceil(self.n / self.B)

    def perm(self, epoch):
        if self._perm_epoch != epoch:
            self._perm = self.ctx.rng("perm", *self.key, epoch).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def run(self, epoch, b0, b1):
        """Global batches b0..b1-1 of `epoch`; returns the summed loss over them (all ranks,
        one Allreduce of the gradients per batch + one of the loss at the end)."""
        perm = self.perm(epoch)
        hi = self.lo + self.X.shape[0]
        total = 0.0
        kind, level = self.noise
        G, V = self.grads.views, self.mom.views
        for b in range(b0, b1):
            g = perm[b * self.B:(b + 1) * self.B]
            pos = np.flatnonzero((g >= self.lo) & (g < hi))
            rows = g[pos] - self.lo
            xb = AE.dense(self.X[rows])
            xin = xb
            if kind != "none" and level > 0:
                rng = self.ctx.rng("noise", *self.key, epoch, b)
                if kind == "mask":
                    U = rng.random((g.size, xb.shape[1]), dtype=F32)[pos]
                    xin = np.empty_like(xb)
                    K.mask_noise(xb, U, F32(level), xin)
                else:
                    N = rng.standard_normal((g.size, xb.shape[1]), dtype=F32)[pos]
                    xin = np.empty_like(xb)
                    K.gauss_noise(xb, N, F32(level), xin)
            lab = None if self.labels is None else self.labels[rows]
            total += self.net.loss_grad(self.P, xin, xb, G, self.tset, 1.0 / g.size, lab)
            with self.ctx.phase("allreduce"):
                self.world.allreduce(self.grads.flat)
            if self.mom2 is not None:
                t = epoch * self.batches + b + 1
                lr_t = F32(self.lr * math.sqrt(1.0 - ADAM_B2 ** t) / (1.0 - ADAM_B1 ** t))
                for nm in self.names:
                    K.adam_step(self.P[nm].reshape(-1), V[nm].reshape(-1),
                                self.mom2.views[nm].reshape(-1), G[nm].reshape(-1), lr_t,
                                F32(ADAM_B1), F32(ADAM_B2), F32(ADAM_EPS), self.wd)
                continue
            for nm in self.names:
                K.momentum_step(self.P[nm].reshape(-1), V[nm].reshape(-1),
                                G[nm].reshape(-1), self.lr, self.mu, self.wd)
        return self.world.allreduce_scalars(total)


class AEBase(Algorithm):
    """Common setup, evaluation, fine-tuning and checkpoint helpers."""
    MODEL_SCHEMA = MODEL_SCHEMA
    SOLVER_SCHEMA = SOLVER_SCHEMA
    DATA = {"binary": False, "dtype": np.float32}
    RESHARDABLE = True
    BLAS_THREADS = False  # BLAS runs single-threaded calls; the networks split their GEMMs
    # over OMP_NUM_THREADS threads themselves (AE.set_gemm_threads): bit-identical for the
    # same thread count

    @classmethod
    def validate_job(cls, job, source):
        m = job["model"]
        if not m["layers"] or min(m["layers"]) < 1:
            raise JobError(f"{source}: [model] layers must be a non-empty list of positive "
                           f"sizes, got {m['layers']}")
        if m["noise"] != "none" and m["noise"] == "mask" and m["noise_level"] >= 1.0:
            raise JobError(f"{source}: [model] noise_level = {m['noise_level']} must be < 1 "
                           "for masking noise")
        if job["solver"]["val_fraction"] >= 0.5:
            raise JobError(f"{source}: [solver] val_fraction = {job['solver']['val_fraction']}"
                           " must be < 0.5 (the validation split is taken from the training "
                           "rows)")

    # -- setup ---------------------------------------------------------------------------
    def setup(self):
        ctx = self.ctx
        m = ctx.model
        AE.set_gemm_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        self.act, self.loss, self.tied = m["activation"], m["loss"], m["tied"]
        self.X = AE.as_input(ctx.train.X)  # CSR stays CSR, densified per minibatch
        # validation split: the last nval global training rows, never trained on
        self.nval = int(round(ctx.solver["val_fraction"] * ctx.train.n))
        if ctx.solver["val_fraction"] > 0:
            self.nval = max(1, self.nval)
        self.ntrain = ctx.train.n - self.nval
        self.best_score, self.bad_epochs = math.inf, 0  # early stopping of a fine-tuning phase
        self.best = collections.defaultdict(lambda: None)  # block key -> best epoch's copy
        self.dims = [ctx.train.d] + list(m["layers"])
        self.K = len(m["layers"])
        self.P = {}
        self.blocks = {}
        for k in range(1, self.K + 1):
            self._layer_block(k)
        self.labels = None
        self.classes = 0
        self.ft = None  # fine-tuning trainer
        self.ft_epoch = 0
        self.rft = None  # reconstruction fine-tuning trainer
        self.rft_epoch = 0
        self.phase_name = "pretrain"  # then "recon", "finetune", "done"
        self.last = {}
        self.mom = {}  # momentum buffers of the live trainers, by name (declared state)
        if ctx.solver["finetune_epochs"] > 0:
            self._ft_setup()  # the softmax block exists from the start: a fixed state layout
        X, _, n = self.eval_shard()
        with ctx.phase("baseline"):  # before the clock starts: charged to no method
            self.baseline = baselines(self.world, self.X, ctx.train.n, X, n, self.dims[-1],
                                      self.loss)
        self._cpu0 = time.process_time()

    def _add_block(self, key, spec, init):
        blk = Block(spec)
        self.blocks[key] = blk
        self.P.update(blk.views)
        for name, fn in init.items():
            blk.views[name][...] = fn()
        return blk

    def _layer_block(self, k):
        din, dout = self.dims[k - 1], self.dims[k]
        spec = [(f"W{k}", (din, dout)), (f"b{k}", (dout,))]
        init = {f"W{k}": lambda: AE.glorot(self.ctx.rng("init", k), din, dout, self.act)}
        if not self.tied:
            spec.append((f"V{k}", (dout, din)))
            init[f"V{k}"] = lambda: AE.glorot(self.ctx.rng("init-dec", k), dout, din,
                                              self.act)
        spec.append((f"c{k}", (din,)))
        return self._add_block(f"L{k}", spec, init)

    def layer_names(self, k):
        return self.blocks[f"L{k}"].names

    # -- evaluation -----------------------------------------------------------------------
    def eval_shard(self):
        """(X, labels, global row count) of the evaluation rows on this rank."""
        ctx = self.ctx
        shard = ctx.test if ctx.test is not None else ctx.train
        if not hasattr(self, "_eval"):
            X = AE.as_input(shard.X)
            y = shard.y
            n = shard.n
            limit = ctx.solver["eval_rows"]
            if limit and limit < n:
                keep = max(0, min(shard.stop, limit) - shard.start)
                X, y, n = X[:keep], y[:keep], limit
            self._eval = (AE.as_input(X), np.asarray(y), n)
        return self._eval

    def recon_error(self, net, world=None):
        """Mean per-example reconstruction loss of `net` on the evaluation rows (collective
        over `world`, default the whole world)."""
        world = world or self.world
        X, _, n = self.eval_shard()
        with self.ctx.phase("eval"):
            s, _ = net.loss_sum(self.P, X)
            return world.allreduce_scalars(s) / n

    # -- validation split and early stopping ---------------------------------------------
    def validate(self, net, classify=False):
        """Mean reconstruction loss (or classification error) of `net` on the validation
        rows (the last nval global training rows; one Allreduce)."""
        lo = min(self.X.shape[0], max(0, self.ntrain - self.ctx.train.start))
        lab = None
        if classify:
            lab = np.ascontiguousarray(self.ctx.train.y[lo:], dtype=np.int32)
        with self.ctx.phase("eval"):
            s, c = net.loss_sum(self.P, self.X[lo:], labels=lab)
            s, c = self.world.allreduce_scalars(s, float(c))
        return 1.0 - c / self.nval if classify else s / self.nval

    def early_stop(self, score):
        """Record a fine-tuning epoch's validation score: a better one keeps a copy of every
        parameter block (self.best); True after `patience` epochs without improvement."""
        if score < self.best_score:
            self.best_score, self.bad_epochs = score, 0
            self.best = {k: b.flat.copy() for k, b in self.blocks.items()}
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.ctx.solver["patience"]

    def restore_best(self, epoch):
        """End of a fine-tuning phase with a validation split: back to the best epoch's
        parameters; reset the bookkeeping for the next phase. Returns the best epoch."""
        best = epoch - self.bad_epochs
        for k, b in self.blocks.items():
            b.flat[...] = self.best[k]
        self.best_score, self.bad_epochs = math.inf, 0
        self.best = collections.defaultdict(lambda: None)
        return best

    def rank_times(self, extra=None):
        """Where every rank's time went: per-rank CPU seconds since setup (process time, so
        a busy-wait counts and a passive wait does not) and phase seconds (RANK_PHASES),
        gathered by one Allreduce of a P-row table (with `extra`, a float64 vector summed
        in the same Allreduce; returned reduced). Keys rank_cpu, rank_t_<phase>."""
        P, nph = self.world.size, len(RANK_PHASES)
        m = 0 if extra is None else extra.size
        buf = np.zeros(P * (1 + nph) + m)
        row = buf[self.world.rank * (1 + nph):(self.world.rank + 1) * (1 + nph)]
        row[0] = time.process_time() - self._cpu0
        row[1:] = [self.ctx.phase_seconds.get(p, 0.0) for p in RANK_PHASES]
        if m:
            buf[P * (1 + nph):] = extra
        self.world.allreduce(buf)
        if m:
            extra[...] = buf[P * (1 + nph):]
        tab = buf[:P * (1 + nph)].reshape(P, 1 + nph)
        out = {"rank_cpu": [round(v, 4) for v in tab[:, 0]]}
        for i, p in enumerate(RANK_PHASES):
            out[f"rank_t_{p}"] = [round(v, 4) for v in tab[:, i + 1]]
        return out

    # -- reconstruction fine-tuning of the unrolled stack --------------------------------------
    def post_step(self):
        """One step of the phase after pre-training: reconstruction, then softmax tuning."""
        if self.phase_name == "recon":
            return self.recon_step()
        return self.finetune_step()

    def recon_step(self):
        """One epoch of data-parallel SGD on the whole unrolled network (every encoder and
        decoder), loss ℓ(net(x), x) on clean x, as in the layer-wise Trainer."""
        ctx, s = self.ctx, self.ctx.solver
        if self.rft is None:
            net = self.eval_net_for(self.P, self.K, ctx.model)
            self.rft = Trainer(self, (RFT_KEY,), net, AE.net_params(net), self.world, self.X,
                               ctx.train.start, self.ntrain, lr=s["recon_finetune_lr"],
                               noise=False, mom="rft", mu=s["finetune_momentum"],
                               adam=s["recon_finetune_optimizer"] == "adam")
        with ctx.phase("train"):
            loss = self.rft.run(self.rft_epoch, 0, self.rft.batches) / self.ntrain
        self.rft_epoch += 1
        last = self.rft_epoch >= s["recon_finetune_epochs"]
        info = {"phase": "recon-finetune", "epoch": self.rft_epoch, "loss": loss}
        if self.nval:
            info["val_recon"] = self.validate(self.rft.net)
            if self.early_stop(info["val_recon"]) or last:
                last = True
                info["best_epoch"] = self.restore_best(self.rft_epoch)
        ev = s["eval_every"]
        if last or (ev and self.rft_epoch % ev == 0):
            info["recon"] = self.recon_error(self.rft.net)
            info["recon_layers"] = self.K
        if last:
            info["recon_final"] = info["recon"]
            self.rft = self.mom["rft"] = self.mom["rft2"] = None
            self.phase_name = "finetune" if s["finetune_epochs"] > 0 else "done"
        self.last.update(info)
        return info

    # -- fine-tuning ------------------------------------------------------------------------
    def _ft_setup(self):
        ctx = self.ctx
        y = ctx.train.y
        if not self.classes:
            mx = self.world.allreduce_scalars(float(y.max()) if y.size else 0.0, op="max")
            self.classes = int(mx) + 1
        if "S" not in self.P:
            dK, c = self.dims[-1], self.classes
            self._add_block("FT", [("S", (dK, c)), ("s", (c,))],
                            {"S": lambda: AE.glorot(ctx.rng("init-ft"), dK, c, "linear")})
        self.ft_net = AE.finetune_net(self.K, self.act)
        names = [n for k in range(1, self.K + 1) for n in (f"W{k}", f"b{k}")] + ["S", "s"]
        lab = np.ascontiguousarray(y, dtype=np.int32)
        self.ft = Trainer(self, (FT_KEY,), self.ft_net, names, self.world, self.X,
                          ctx.train.start, self.ntrain, labels=lab,
                          lr=ctx.solver["finetune_lr"], mu=ctx.solver["finetune_momentum"],
                          noise=False, mom="ft")

    def finetune_step(self):
        if self.ft is None:
            self._ft_setup()
        with self.ctx.phase("train"):
            loss = self.ft.run(self.ft_epoch, 0, self.ft.batches) / self.ntrain
        self.ft_epoch += 1
        E = self.ctx.solver["finetune_epochs"]
        info = {"phase": "finetune", "epoch": self.ft_epoch, "loss": loss}
        if self.nval:
            info["val_error"] = self.validate(self.ft_net, classify=True)
            if self.early_stop(info["val_error"]) or self.ft_epoch >= E:
                info["best_epoch"] = self.restore_best(self.ft_epoch)
                self.ft_epoch = E  # the phase is over (a resume must not reopen it)
        info.update(self.classify())
        if self.ft_epoch >= E:
            self.phase_name = "done"
        self.last.update(info)
        return info

    def classify(self):
        X, y, n = self.eval_shard()
        with self.ctx.phase("eval"):
            s, correct = self.ft_net.loss_sum(self.P, X, labels=np.asarray(y, dtype=np.int32))
            s, correct = self.world.allreduce_scalars(s, float(correct))
        return {"test_error": 1.0 - correct / n, "test_nll": s / n}

    def after_pretrain(self, info):
        """Pre-training is over (info holds the unrolled K-layer error `recon`): record it
        with the calibration baselines and move to the next phase."""
        s = self.ctx.solver
        info["recon_pretrain"] = info["recon_final"] = info["recon"]
        info.update(self.baseline)
        b = self.baseline
        info["show_baselines"] = " ".join(
            f"{name} {b[key]:.4g}" for name, key in (
                ("mean-image", "baseline_mean"), (f"PCA-{b.get('baseline_pca_k')}",
                                                  "baseline_pca"), ("floor", "baseline_floor"))
            if key in b)
        self.phase_name = ("recon" if s["recon_finetune_epochs"] > 0 else
                           "finetune" if s["finetune_epochs"] > 0 else "done")

    # -- checkpoint -------------------------------------------------------------------------
    STATE = {"phase_name": Str(), "ft_epoch": Int(), "rft_epoch": Int(), "classes": Int(),
             "best_score": Float(), "bad_epochs": Int()}

    def momentum_keys(self):
        """Names of the momentum buffers a checkpoint may hold (AEBase.momentum)."""
        return ["ft", "rft", "rft2"]

    def state_fields(self):
        out = super().state_fields()
        for key in sorted(self.blocks):  # every block exists from setup on
            out[f"blocks/{key}/flat"] = Array(inplace=True)
            out[f"best/{key}"] = Array(optional=True)  # early stopping's best epoch
        for key in self.momentum_keys():
            out[f"mom/{key}"] = Array(optional=True)
        return out

    def momentum(self, key, names):
        """The momentum buffer `key` for the parameters `names`: the restored one when it
        fits, else zeros (a new phase or layer)."""
        size = sum(self.P[n].size for n in names)
        buf = self.mom.get(key)
        if buf is None or buf.shape != (size,):
            buf = self.mom[key] = np.zeros(size, F32)
        return buf

    def restored(self):
        super().restored()
        self.ft = self.rft = None  # rebuilt on first use, around the restored momenta
        if self.phase_name == "done" and self.ft_epoch < self.ctx.solver["finetune_epochs"]:
            self.phase_name = "finetune"  # the resumed job asks for more fine-tuning

    @property
    def done(self):
        return self.phase_name == "done"

    def final_model(self):
        out = {f"model/{n}": np.asarray(a) for n, a in self.P.items()}
        out["model/layers"] = np.asarray(self.dims, dtype=np.int64)
        return out

    def summary_info(self):
        return {k: v for k, v in self.last.items() if isinstance(v, (int, float, str))}

    @classmethod
    def evaluate(cls, ctx, model):
        """Unrolled reconstruction error (and fine-tuned test error if a softmax exists)."""
        P = {k[len("model/"):]: np.ascontiguousarray(v) for k, v in model.items()
             if k.startswith("model/") and k != "model/layers"}
        m = ctx.model
        Kn = len(m["layers"])
        shard = ctx.test if ctx.test is not None else ctx.train
        X = AE.as_input(shard.X)
        net = cls.eval_net_for(P, Kn, m)
        s, _ = net.loss_sum(P, X)
        out = {"data": "test" if ctx.test is not None else "train", "rows": shard.n,
               "recon": ctx.world.allreduce_scalars(s) / shard.n}
        out.update(baselines(ctx.world, AE.as_input(ctx.train.X),
                             ctx.train.n, X, shard.n, m["layers"][-1], m["loss"]))
        if "S" in P:
            ft = AE.finetune_net(Kn, m["activation"])
            s, c = ft.loss_sum(P, X, labels=np.asarray(shard.y, dtype=np.int32))
            s, c = ctx.world.allreduce_scalars(s, float(c))
            out.update(test_error=1.0 - c / shard.n, test_nll=s / shard.n)
        return out

    @classmethod
    def eval_net_for(cls, P, Kn, m):
        return AE.stack_net(Kn, m["activation"], m["loss"], m["tied"])


def baselines(world, Xtr, ntr, Xev, nev, k, loss):
    """Calibration figures of a reconstruction error, per evaluation row: the mean image
    (`baseline_mean`), PCA with k components (`baseline_pca`), both fitted on the training
    rows (one Allreduce of [Σx, Σxxᵀ], numpy eigh; skipped when d > PCA_MAX_D), and for
    cross-entropy the floor (`baseline_floor`, entropy of the targets). Cross-entropy clips
    the predictions to [ε, 1 − ε], ε in PCA_EPS chosen on the training rows (one Allreduce).
    Collective over `world`."""
    d = Xtr.shape[1]
    k = min(k, d) if d <= PCA_MAX_D else 0
    buf = np.zeros(d + (d * d if k else 0))
    C = buf[d:].reshape(d, d) if k else None
    for s in range(0, Xtr.shape[0], 4096):
        x = AE.dense(Xtr[s:s + 4096]).astype(np.float64)
        buf[:d] += x.sum(0)
        if k:
            C += x.T @ x
    world.allreduce(buf)
    mu, U = AE.pca_fit(buf[:d], buf[d:].reshape(d, d), ntr, k) if k else \
        (buf[:d] / ntr, np.zeros((d, 0)))
    eps = 0.0
    if loss == "xent":
        tr = np.array([AE.baseline_loss_sums(Xtr, mu, U, loss, e)[:2] for e in PCA_EPS])
        world.allreduce(tr)
        eps = PCA_EPS[int(np.argmin(tr[:, 1] if k else tr[:, 0]))]
    ev = AE.baseline_loss_sums(Xev, mu, U, loss, eps)
    world.allreduce(ev)
    out = {"baseline_mean": ev[0] / nev}
    if k:
        out["baseline_pca"] = ev[1] / nev
        out["baseline_pca_k"] = k
    if loss == "xent":
        out["baseline_floor"] = ev[2] / nev
    return out


def load_group_train(ctx, gworld):
    """The training rows again, block-split over a sub-World (SLP: every layer group needs
    the whole training set)."""
    d = ctx.job["data"]
    return datamod.load(gworld, d["train"], fmt=d["format"], group=d["train_group"],
                        features=d["features"], zero_based=d["zero_based"],
                        positive=d["positive"], binary=False, normalize=d["normalize"],
                        max_rows=d["max_rows"], dtype=F32, what="train")
