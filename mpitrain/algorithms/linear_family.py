"""What every linear algorithm (lbfgs, fadl, psgd-mix, dasvrda, prox-svrg, katyusha) shares.

The objective (mean convention, no intercept; n = the GLOBAL number of rows):

    f(w) = (1/n) Σᵢ ℓ(yᵢ, wᵀxᵢ) + (l2/2)‖w‖² + l1‖w‖₁,   ℓ looked up in models/losses.py

- MODEL_SCHEMA: the [model] section (loss, l2, l1, intercept, multiclass, values: the value
  type the CSR kernels store, models/linear.SplitCSR).
- LinearObjective: this rank's sums [Σ∇ℓᵢ, Σℓᵢ] (a (d+1)-vector) and, after the caller's
  Allreduce(SUM) of them, (f, ∇f). The Allreduce is written in the algorithm's step().
- CachedLine: φ(t) = f(w + t·p) and φ'(t) from cached margins a = Xw and δ = Xp; a rank's
  part is two scalars (the caller Allreduces them), so a line-search trial costs no pass over
  the data and no d-vector collective.
- certified_gap: an upper bound on f(w) − f* computed from the reduced sums only:
  min(dist(0, ∂f(w))²/(2·l2), Fenchel duality gap). It needs no reference run.
- floor_tol: the floating-point floor of f, below which a decrease means nothing.
- evaluate_linear: objective and accuracy of a linear model on the test data (`mpitrain eval`).
- LinearAlgorithm: the base class of the family's algorithms (schema, final model `model/w`,
  evaluation).
"""
import numpy as np

from ..schema import Field
from .base import Algorithm
from ..models import glm
from ..models.linear import VALUE_TYPES, LinearShard, regularized
from ..models.losses import LOSSES

MODEL_SCHEMA = {
    "loss": Field(str, "logistic", "loss of the margin wᵀx (models/losses.py): logistic "
                  "log(1+exp(−y m)), squared_hinge max(0, 1−y m)², squared ½(m − y)²",
                  choices=list(LOSSES)),
    "l2": Field(float, 1e-4, "L2 weight: (l2/2)‖w‖²", min=0.0),
    "l1": Field(float, 0.0, "L1 weight: l1‖w‖₁", min=0.0),
    "intercept": Field(bool, False, "fit an unregularised intercept b (wᵀx + b); default "
                       "false (models/glm.py says why); lbfgs only"),
    "multiclass": Field(str, "auto", "more than two label values: one multinomial "
                        "(softmax) model (lbfgs), or one-vs-rest binary models; auto = "
                        "multinomial where the algorithm fits it, else ovr",
                        choices=["auto", "multinomial", "ovr"]),
    "values": Field(str, "float64", "how the loss and gradient kernels keep a CSR training "
                    "set's values: float32 stores 4 bytes instead of 8 per value (less memory "
                    "and memory bandwidth) at a relative rounding of at most 2^-24 per value, "
                    "products and sums stay in double; binary models without intercept (the "
                    "kernels' path); dense data is unaffected", choices=list(VALUE_TYPES),
                    hash_omits="float64"),  # runs written before the key keep their hash
}

EPS = float(np.finfo(np.float64).eps)


def floor_tol(f, ulps=16):
    """A change of f smaller than this is below the floating-point floor of its evaluation
    (a sum of n rounded terms): `ulps` units in the last place of |f|."""
    return ulps * EPS * max(abs(f), np.finfo(np.float64).tiny)


class LinearObjective:
    """f and ∇f of the linear family from one rank's shard. Use:

        buf = obj.sums(w, margins)        # this rank's [Σ∇ℓᵢ, Σℓᵢ] (and its margins)
        world.allreduce(buf)              # in the algorithm's step(): one (d+1)-vector
        f, g = obj.value_grad(buf, w)     # f(w) (l1 included) and ∇ of its smooth part
    """

    def __init__(self, shard, loss, l2, l1=0.0, values="float64"):
        self.lm = LinearShard(shard, loss, values)
        self.loss = LOSSES[loss]
        self.l2, self.l1 = float(l2), float(l1)
        self.n, self.d = shard.n, shard.d
        self.buf = np.empty(self.d + 1)

    def sums(self, w, margins=None):
        """This rank's [Σ∇ℓᵢ(w), Σℓᵢ(w)] in self.buf (returned); margins (if given) filled."""
        self.lm.loss_grad_sums(w, self.buf, margins)
        return self.buf

    def value_grad(self, buf, w):
        """(f(w), ∇(smooth part)(w)) from the reduced sums."""
        g = buf[:self.d] / self.n + self.l2 * w
        return regularized(buf[self.d] / self.n, w, self.l2, self.l1), g

    def line(self, margins, delta, w, p):
        return CachedLine(self, margins, delta, w, p)

    def plane(self, margins, delta, sigma, w, p, s):
        return CachedPlane(self, margins, delta, sigma, w, p, s)


class CachedLine:
    """φ(t) = f(w + t·p), φ'(t) for smooth f (l1 = 0) from the margins a = Xw, δ = Xp of this
    rank's rows: `local(t)` gives this rank's (Σℓ, Σℓ'·δ); `value(t, sums)` the global φ, φ'
    from their Allreduce(SUM)."""

    def __init__(self, obj, margins, delta, w, p):
        self.obj, self.a, self.delta = obj, margins, delta
        self.ww, self.wp, self.pp = float(w @ w), float(w @ p), float(p @ p)

    def local(self, t):
        from .._kernels import linear as K
        lm = self.obj.lm
        return K.line_phi(lm.code, lm.y, self.a, self.delta, t)

    def value(self, t, lf, lg):
        o = self.obj
        f = lf / o.n + 0.5 * o.l2 * (self.ww + 2.0 * t * self.wp + t * t * self.pp)
        return f, lg / o.n + o.l2 * (self.wp + t * self.pp)


class CachedPlane:
    """ψ(α, β) = f(w + α·p + β·s) for smooth f (l1 = 0), its gradient and Hessian in (α, β),
    from the margins a = Xw, δ = Xp, σ = Xs of this rank's rows: `local(x)` gives this rank's
    [Σℓ, Σℓ'δ, Σℓ'σ, Σℓ''δ², Σℓ''δσ, Σℓ''σ²] at m = a + αδ + βσ; `value(x, sums)` the global
    (ψ, ∇ψ, ∇²ψ) from their Allreduce(SUM)."""

    def __init__(self, obj, a, delta, sigma, w, p, s):
        self.obj, self.a, self.delta, self.sigma = obj, a, delta, sigma
        self.G = np.array([[p @ p, p @ s], [p @ s, s @ s]])
        self.wv = np.array([w @ p, w @ s])
        self.ww = float(w @ w)

    def local(self, x):
        L, y = self.obj.loss, self.obj.lm.y
        m = self.a + x[0] * self.delta + x[1] * self.sigma
        d1, d2 = L.deriv(y, m), L.curv(y, m)
        return np.array([L.value(y, m).sum(), d1 @ self.delta, d1 @ self.sigma,
                         d2 @ (self.delta * self.delta), d2 @ (self.delta * self.sigma),
                         d2 @ (self.sigma * self.sigma)])

    def value(self, x, b):
        n, l2, G = self.obj.n, self.obj.l2, self.G
        f = b[0] / n + 0.5 * l2 * (self.ww + 2.0 * x @ self.wv + x @ G @ x)
        g = b[1:3] / n + l2 * (self.wv + G @ x)
        H = np.array([[b[3], b[4]], [b[4], b[5]]]) / n + l2 * G
        return f, g, H


def min_norm_subgradient(g_smooth, w, l1):
    """The element of ∂f(w) = ∇(smooth)(w) + l1·∂‖w‖₁ of least norm (coordinate-wise)."""
    if not l1:
        return g_smooth
    return np.where(w != 0, g_smooth + l1 * np.sign(w),
                    np.sign(g_smooth) * np.maximum(np.abs(g_smooth) - l1, 0.0))


def certified_gap(g_smooth, w, l1, l2, dual=None):
    """An upper bound on f(w) − f*, certified without any reference solution.

    f is l2-strongly convex, so f(w) − f* ≤ dist(0, ∂f(w))²/(2·l2). `dual`, if given, is a
    Fenchel duality gap (duality_gap below) and the smaller bound is returned. +inf when no
    bound applies (l2 = 0 and no dual)."""
    bound = np.inf
    if l2 > 0:
        s = min_norm_subgradient(g_smooth, w, l1)
        bound = float(s @ s) / (2.0 * l2)
    if dual is not None:
        bound = min(bound, dual)
    return bound


def dual_scale(buf, n, l1, l2):
    """The scale s ∈ (0, 1] that makes the dual point s·u feasible, u = (ℓ'(yᵢ, mᵢ))ᵢ, from
    the reduced sums buf = [Xᵀu, Σℓᵢ] (the gradient evaluation's buffer): 1 when l2 > 0,
    else min(1, l1/‖Xᵀu/n‖∞)."""
    if l2 > 0:
        return 1.0
    vmax = float(np.max(np.abs(buf[:-1]))) / n if buf.shape[0] > 1 else 0.0
    return 1.0 if vmax <= l1 else l1 / vmax


def conj_sum(obj, margins, s):
    """This rank's Σℓ*(yᵢ, s·uᵢ), uᵢ = ℓ'(yᵢ, mᵢ) (one scalar to Allreduce)."""
    L, y = obj.loss, obj.lm.y
    return float(np.sum(L.conj(y, s * L.deriv(y, margins))))


def duality_gap(buf, conj, s, w, n, l1, l2):
    """P(w) − D(s·u) ≥ f(w) − f*, from the reduced buf = [Xᵀu, Σℓᵢ], conj = Σℓ*(yᵢ, s·uᵢ)
    and s = dual_scale(...). Fenchel duality: P(w) = (1/n)Σℓ(yᵢ, xᵢᵀw) + R(w),
    D(u) = −(1/n)Σℓ*(yᵢ, uᵢ) − R*(−Xᵀu/n), R = l1‖·‖₁ + (l2/2)‖·‖², R*(v) = ‖S_l1(v)‖²/(2·l2)
    (S the soft threshold) or, for l2 = 0, 0 on ‖v‖∞ ≤ l1 (s makes it so). Scaling u by
    s ∈ (0, 1] keeps it in the domain of every loss's conjugate in the table."""
    d = w.shape[0]
    primal = regularized(buf[d] / n, w, l2, l1)
    dual = -conj / n
    if l2 > 0:
        v = -s * buf[:d] / n
        st = np.sign(v) * np.maximum(np.abs(v) - l1, 0.0)
        dual -= float(st @ st) / (2.0 * l2)
    return primal - dual


def evaluate_linear(ctx, w):
    """Objective and accuracy of a linear model on the test data (or train if none).

    The margins are those of `mpitrain predict` (models/glm.scores: the kernels' per-row
    sums over the rows as stored), so eval's accuracy is that of predict's labels. No
    SplitCSR layout is built for the test set: beyond the loaded data the pass needs four
    vectors of the rows (margins, copied row pointers: 32 bytes per row) and a copy of the
    column indices (4 bytes per stored value). [model] values does not apply here: it is
    how training keeps the training set's values."""
    shard = ctx.test if ctx.test is not None else ctx.train
    lm = LinearShard(shard, ctx.model["loss"])  # the labels and the loss; not its layout
    m = glm.scores(shard.X, w[:, None], None)[:, 0]
    correct, rows = lm.accuracy_counts(w, m)
    loss, correct = ctx.world.allreduce_scalars(lm.loss_sum(m), float(correct))
    l1 = ctx.model.get("l1", 0.0)
    return {"data": "test" if ctx.test is not None else "train", "rows": shard.n,
            "objective": regularized(loss / shard.n, w, ctx.model["l2"], l1),
            "mean_loss": loss / shard.n, "accuracy": correct / shard.n}


class LinearAlgorithm(Algorithm):
    """What every algorithm of the linear family shares: the [model] schema, the final model
    (`model/w`, its iterate `self.w`) and `mpitrain eval`."""
    FAMILY = "linear"  # what final.h5 describes (model_file.py)
    MODEL_SCHEMA = MODEL_SCHEMA

    def __new__(cls, ctx=None):
        """More than two classes for an algorithm that fits binary models (reading raw
        labels): K one-vs-rest problems in one run (algorithms/multiclass.py). Collective."""
        if ctx is not None and not cls.DATA.get("binary", True):
            labels = glm.one_vs_rest_labels(ctx, cls.name)
            if labels is not None:
                from .multiclass import OneVsRest
                return OneVsRest(cls, ctx, labels)
        return super().__new__(cls)

    def final_model(self):
        obj = getattr(self, "obj", None)  # labels decided by models/glm.py: its classes
        return glm.final_model(obj, self.w) if hasattr(obj, "labels") else {"model/w": self.w}

    @classmethod
    def evaluate(cls, ctx, model):
        if not cls.DATA.get("binary", True):  # raw labels: mapped by the model's classes
            return glm.evaluate(ctx, model)
        return evaluate_linear(ctx, model["model/w"])
