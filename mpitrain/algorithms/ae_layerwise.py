"""Greedy layer-wise autoencoders (sae-greedy, dae-stacked) and the gradual DAE (dae-gradual).

Objectives (x in [0,1]^d, hₖ = act(hₖ₋₁Wₖ + bₖ), h₀ = x, x̃ = x with [model] noise, ℓ from [model] loss):

sae-greedy / dae-stacked, layer k = 1..K in turn, lower layers frozen:
    min_{Wₖ,bₖ,Vₖ,cₖ} (1/n)Σᵢ ℓₖ( out(act(h̃ₖ₋₁,ᵢWₖ + bₖ)Vₖ + cₖ), hₖ₋₁,ᵢ )
  where h̃ₖ₋₁ is hₖ₋₁ corrupted by the [model] noise (none by default for sae-greedy, 25 %
  masking for dae-stacked), ℓ₁ = loss on x, ℓₖ (k>1) = cross-entropy on sigmoid codes, else
  squared error; Vₖ = Wₖᵀ when tied.
dae-gradual, stage k = 1..K, ALL of W₁..Wₖ keep training, noise only at x, loss on clean x:
    direct (as printed):  min (1/n)Σᵢ ℓ( out(hₖ(x̃ᵢ)Dₖ + eₖ), xᵢ )   (a new Dₖ per stage)
    mirrored (option):    min (1/n)Σᵢ ℓ( decₖ∘…∘dec₁ of hₖ(x̃ᵢ), xᵢ )
Every stage/layer runs E epochs ([solver] epochs) or U weight updates ([solver] updates,
DAE only) of minibatch momentum SGD, synchronous data-parallel: one Allreduce(SUM) of the
gradients per global batch (see ae_common.Trainer). One step() = one epoch (or the part of
one the update budget allows). Greedy/stacked regenerate the frozen input hₖ₋₁ of their
shard locally when layer k starts (no communication).
"""

from ..schema import Field
from ..errors import JobError
from ..models import autoencoder as AE
from ..state import Int
from .ae_common import (MODEL_SCHEMA, PCA_MAX_D, SOLVER_SCHEMA, AEBase, Trainer,
                        with_defaults)

UPDATES = Field(int, 0, "weight updates (global batches) per stage; 0 = use epochs", min=0)


class Greedy(AEBase):
    """Greedy layer-wise pre-training; each layer data-parallel over all ranks."""
    name = "sae-greedy"
    FAMILY = "autoencoder"  # what final.h5 describes (model_file.py)
    summary = "greedy layer-wise autoencoder pre-training, data-parallel per layer"

    def setup(self):
        super().setup()
        self.layer, self.epoch, self.pos, self.updates = 1, 0, 0, 0
        self.tr = None

    def _budget(self):
        return self.ctx.solver.get("updates", 0)

    def _make_trainer(self):
        k = self.layer
        with self.ctx.phase("regen"):
            H = AE.encode(self.P, self.X, list(range(1, k)), self.act)
        net = AE.layer_net(k, self.act, self.loss, self.tied)
        self.tr = Trainer(self, (k,), net, self.layer_names(k), self.world, H,
                          self.ctx.train.start, self.ntrain, mom="layer")

    def eval_net(self, k):
        return AE.stack_net(k, self.act, self.loss, self.tied)

    def step(self):
        if self.phase_name != "pretrain":
            return self.post_step()
        if self.tr is None:
            self._make_trainer()
        s = self.ctx.solver
        k, n, B = self.layer, self.ntrain, s["batch"]
        nb = self.tr.batches
        budget = self._budget()
        b1 = nb if not budget else min(nb, self.pos + budget - self.updates)
        with self.ctx.phase("train"):
            total = self.tr.run(self.epoch, self.pos, b1)
        rows = min(b1 * B, n) - self.pos * B
        self.updates += b1 - self.pos
        self.pos = b1
        if self.pos >= nb:
            self.epoch, self.pos = self.epoch + 1, 0
        finished = self.updates >= budget if budget else self.epoch >= s["epochs"]
        info = {"layer": k, "epoch": self.epoch, "updates": self.updates,
                "loss": total / rows, "show_layer": f"{k}/{self.K}"}
        ev = s["eval_every"]
        if finished or (ev and self.pos == 0 and self.epoch % ev == 0):
            info["recon"] = self.recon_error(self.eval_net(k))
            info["recon_layers"] = k
        info.update(self.rank_times())  # one small Allreduce: per-rank CPU and phases
        if finished:
            self.layer += 1
            self.epoch = self.pos = self.updates = 0
            self.tr = self.mom["layer"] = None
            if self.layer > self.K:
                self.after_pretrain(info)
        self.last.update({k2: v for k2, v in info.items() if not k2.startswith("show_")})
        return info

    STATE = {"layer": Int(), "epoch": Int(), "pos": Int(), "updates": Int()}

    def momentum_keys(self):
        return super().momentum_keys() + ["layer"]

    def budget(self):
        """Epochs done of all phases (pre-training, reconstruction and softmax fine-tuning)
        out of their caps; early stopping may end a phase sooner. None with an update budget."""
        s = self.ctx.solver
        if s.get("updates"):
            return None
        done = (min(self.layer, self.K + 1) - 1) * s["epochs"] + (
            self.epoch if self.phase_name == "pretrain" else 0) + self.rft_epoch + self.ft_epoch
        return done, self.K * s["epochs"] + s["recon_finetune_epochs"] + \
            s["finetune_epochs"], "epoch"

    def restored(self):
        super().restored()
        self.tr = None  # rebuilt on the next step, around the restored momentum

    @classmethod
    def memory_bytes(cls, job, train):
        """Peak bytes per rank, estimated before anything is allocated (driver.check_memory):
        every layer's parameters (float32) with their gradient and momentum buffers (the
        unrolled fine-tuning trains them all at once), a global minibatch's activations and
        deltas through the unrolled stack (CSR input stays CSR and is densified per
        minibatch), the evaluation pass over this rank's rows, and the PCA baseline (float64:
        d × d when d ≤ PCA_MAX_D) with float64 temporaries of this rank's rows (measured:
        about ten copies of dense rows, two of CSR rows)."""
        m, s = job["model"], job["solver"]
        d, rows = int(train.d), int(train.rows)
        dims = [d] + [int(k) for k in m["layers"]]
        weights = sum(a * b for a, b in zip(dims, dims[1:])) * (1 if m["tied"] else 2)
        params = weights + 2 * sum(dims)
        units = 2 * sum(dims)  # encoder and decoder of the unrolled stack
        f32 = 3 * params + 4 * int(s["batch"]) * units + rows * units
        f64 = (3 * d * d if d <= PCA_MAX_D else 0) + (2 if train.sparse else 10) * rows * d
        return 4 * f32 + 8 * f64


class Stacked(Greedy):
    """Stacked denoising autoencoder (Vincent et al. 2010): noise at each layer's input."""
    name = "dae-stacked"
    FAMILY = "autoencoder"  # what final.h5 describes (model_file.py)
    summary = "stacked denoising autoencoder: noisy layer input, lower layers frozen"
    MODEL_SCHEMA = with_defaults(MODEL_SCHEMA, noise="mask", noise_level=0.25)
    SOLVER_SCHEMA = dict(SOLVER_SCHEMA, updates=UPDATES)


class Gradual(Greedy):
    """Gradual DAE training (Kalmanovich & Chechik): all layers keep training, noise at x."""
    name = "dae-gradual"
    FAMILY = "autoencoder"  # what final.h5 describes (model_file.py)
    summary = "gradual denoising autoencoder: stage k trains W1..Wk jointly on noisy x"
    MODEL_SCHEMA = dict(with_defaults(MODEL_SCHEMA, noise="mask", noise_level=0.25),
                        decoder=Field(str, "direct", "stage k decodes h_k straight to x with "
                                      "a new matrix (as printed) or through a mirrored "
                                      "decoder stack", choices=["direct", "mirrored"]))
    SOLVER_SCHEMA = dict(SOLVER_SCHEMA, updates=UPDATES)

    @classmethod
    def validate_job(cls, job, source):
        super().validate_job(job, source)
        if job["model"]["tied"] and job["model"]["decoder"] == "direct":
            raise JobError(f"{source}: [model] tied = true needs decoder = \"mirrored\" (the "
                           "direct decoder maps h_k to x and has no encoder to tie to)")

    @property
    def direct(self):
        return self.ctx.model["decoder"] == "direct"

    def _layer_block(self, k):
        if not self.direct:
            return super()._layer_block(k)
        din, dout = self.dims[k - 1], self.dims[k]
        return self._add_block(f"L{k}", [(f"W{k}", (din, dout)), (f"b{k}", (dout,))],
                               {f"W{k}": lambda: AE.glorot(self.ctx.rng("init", k), din,
                                                           dout, self.act)})

    def _dec_block(self, k):
        if f"D{k}" in self.blocks:
            return
        d0, dk = self.dims[0], self.dims[k]
        self._add_block(f"D{k}", [(f"D{k}", (dk, d0)), (f"e{k}", (d0,))],
                        {f"D{k}": lambda: AE.glorot(self.ctx.rng("init-dec", k), dk, d0,
                                                    self.act)})

    def eval_net(self, k):
        if self.direct:
            return AE.direct_net(k, self.act, self.loss)
        return AE.stack_net(k, self.act, self.loss, self.tied)

    def _make_trainer(self):
        k = self.layer
        names = [n for j in range(1, k + 1) for n in (f"W{j}", f"b{j}")]
        if self.direct:
            self._dec_block(k)
            names += [f"D{k}", f"e{k}"]
        else:
            for j in range(k, 0, -1):
                names += ([] if self.tied else [f"V{j}"]) + [f"c{j}"]
        self.tr = Trainer(self, (k,), self.eval_net(k), names, self.world, self.X,
                          self.ctx.train.start, self.ntrain, mom="layer")

    def setup(self):
        super().setup()
        if self.direct:  # every stage's decoder exists from the start: a fixed state layout
            for k in range(1, self.K + 1):
                self._dec_block(k)

    @classmethod
    def eval_net_for(cls, P, Kn, m):
        if m["decoder"] == "direct":
            return AE.direct_net(Kn, m["activation"], m["loss"])
        return AE.stack_net(Kn, m["activation"], m["loss"], m["tied"])
