"""The linear models people expect: intercept, multiclass (multinomial or one-vs-rest),
regression and labels of any value, for the algorithms of the linear family that allow them.

The objective (mean convention, n = the GLOBAL number of rows, K output columns):

    f(W, b) = (1/n) Σᵢ ℓ(yᵢ, Wᵀxᵢ + b) + (l2/2)‖W‖²      (b unregularised, like
                                                         scikit-learn's fit_intercept)
  binary       two label values: K = 1, yᵢ = +1 for the larger value (in sorted order, so
               class 1 of the model file) and −1 for the smaller; ℓ from models/losses.py.
  regression   loss = "squared": K = 1, yᵢ the real label, ℓ = ½(m − y)² (scikit-learn's
               Ridge with alpha = n·l2).
  multinomial  more than two values and [model] multiclass = "multinomial" (or "auto", the
               default, with the logistic loss) for lbfgs: K classes,
               ℓ(y, m) = log Σₖ exp(mₖ) − m_y (softmax cross-entropy; scikit-learn's
               multinomial LogisticRegression with C = 1/(n·l2)).
  ovr          more than two values and multiclass = "ovr" (or "auto" with another loss or
               another algorithm): K columns, column k the binary problem "class k (+1)
               against the rest (−1)" (scikit-learn's one-vs-rest). lbfgs solves the K
               problems together (f is the SUM of the K independent binary objectives, so its
               minimiser is each one's; each evaluation's Allreduce carries all K gradients);
               fadl and psgd-mix solve them one after another (algorithms/multiclass.py).

Who fits what (CAPABLE below; others refuse with one line naming the algorithms that can):
lbfgs everything here; fadl and psgd-mix two classes of any value, one-vs-rest, and
regression, without intercept; dasvrda, prox-svrg, katyusha binary ±1/0-1 labels only (data.py
refuses others).

Labels of any value (numbers, or strings mapped to indices by data.py with the names in
Shard.classes) become classes in sorted order; `classes` goes to final.h5 so that prediction
returns the original values. The parameter vector is θ = [vec(W), b]: W (d × K) row-major, then
the K intercepts when [model] intercept = true, so one evaluation is ONE Allreduce of the
(d·K + K + 1)-vector [Σ∇, Σℓ].

Default [model] intercept = false (scikit-learn's default is true): without an intercept f is
l2-strongly convex, so ‖∇f‖²/(2·l2) certifies the gap, every job hash and published figure stays
valid, and every algorithm of the family can run it. With an intercept f is not strongly convex
in b; the stop test ‖∇f‖²/(2·l2) then bounds only h(w) − h* for h(w) = min_b f(w, b) once ∇_b f
= 0 (tests certify f(w, b) − f* as (f(w, b) − f(w, b̂)) + ‖∇_w f(w, b̂)‖²/(2·l2), b̂ = argmin_b).
"""
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import DataError, JobError
from .losses import LOSSES

# What each algorithm can fit besides a binary model without intercept (checked at job
# resolution for intercept and squared loss, at setup for the labels).
CAPABLE = {"lbfgs": {"intercept", "multiclass", "squared"}}


def capable(what):
    return ", ".join(sorted(a for a, c in CAPABLE.items() if what in c)) or "none"


def check_job(name, job, source):
    """Refuse (JobError, exit 78) an intercept that `name` cannot fit, or float32 values with
    an intercept (the multinomial case is refused once the labels are known: objective())."""
    if job["model"].get("intercept") and "intercept" not in CAPABLE.get(name, set()):
        raise JobError(f"{source}: [model] intercept = true is not supported by {name}; "
                       f"algorithms that fit an intercept: {capable('intercept')}")
    if job["model"].get("intercept") and job["model"].get("values", "float64") != "float64":
        raise JobError(f"{source}: [model] values = {job['model']['values']!r} applies to "
                       "models without intercept (the CSR kernels' path); with intercept = "
                       "true it needs \"float64\"")


def multiclass_kind(name, model):
    """"multinomial" or "ovr": [model] multiclass, where "auto" is multinomial for an
    algorithm that fits it with the logistic loss, else one-vs-rest."""
    kind = model.get("multiclass", "auto")
    if kind == "auto":
        kind = "multinomial" if "multiclass" in CAPABLE.get(name, set()) and \
            model["loss"] == "logistic" else "ovr"
    return kind


def classes_array(classes):
    """The class values as final.h5 stores them (names as variable-length UTF-8)."""
    classes = np.asarray(classes)
    if classes.dtype.kind == "U":
        import h5py
        classes = np.array(classes.tolist(), dtype=h5py.string_dtype())
    return classes


@dataclass
class Labels:
    kind: str            # "binary" | "regression" | "multinomial" | "ovr"
    K: int               # output columns
    classes: object      # class values in order (None: regression, or `positive` binary)


def _first_row(world, shard, mask):
    rows = np.flatnonzero(mask)
    return int(world.reduce_obj(shard.start + int(rows[0]) if rows.size else shard.n,
                                op="min"))


def prepare(world, shard, job, name, ovr_ok=False):
    """Decide the model kind from the labels over all ranks and set shard.y to what the
    objective needs: ±1 (binary), class index (multiclass) or the real value (regression).
    Collective: every rank takes the same branch and raises the same error. `ovr_ok`: the
    caller fits K classes one-vs-rest (algorithms/multiclass.py)."""
    model, data = job["model"], job["data"]
    if model["loss"] == "squared":
        return Labels("regression", 1, None)
    if data["positive"]:  # data.py mapped them to ±1; model_file records the classes
        return Labels("binary", 1, None)
    names = getattr(shard, "classes", None)
    mine = np.unique(shard.y)
    vals = np.unique(np.concatenate(world.gather_obj(mine)))
    if names is None and vals.size and not np.all(vals == np.round(vals)):
        v = float(vals[vals != np.round(vals)][0])
        row = _first_row(world, shard, shard.y == v)
        raise DataError(f"{shard.path}: row {row}: label {v:g} is not a class (a real value); "
                        "for regression set [model] loss = \"squared\"")
    shown = [names[int(v)] if names is not None else f"{v:g}" for v in vals]
    if vals.size < 2:
        raise DataError(f"{shard.path}: every label is {shown[0] if shown else '?'}: one "
                        "class only, nothing to learn")
    classes = np.asarray(names)[vals.astype(np.intp)] if names is not None else vals
    if vals.size == 2:
        shard.y = np.where(shard.y == vals[1], 1.0, -1.0)
        return Labels("binary", 1, classes)
    kind = multiclass_kind(name, model)
    if "multiclass" not in CAPABLE.get(name, set()) and not (kind == "ovr" and ovr_ok):
        row = _first_row(world, shard, shard.y == vals[2])
        raise DataError(f"{shard.path}: row {row}: label {shown[2]} is a third class (labels "
                        f"{', '.join(shown[:6])}{', ...' if len(shown) > 6 else ''}); {name} "
                        "fits two classes (one-vs-rest: multiclass = \"ovr\"); algorithms "
                        f"that fit more: {capable('multiclass')} (or set [data] positive = "
                        "[...])")
    if kind == "multinomial" and model["loss"] != "logistic":
        raise JobError(f"[model] multiclass = \"multinomial\" needs loss = \"logistic\" (the "
                       f"loss is {model['loss']!r}); use multiclass = \"ovr\"")
    shard.y = np.searchsorted(vals, shard.y).astype(np.float64)
    return Labels(kind, int(vals.size), classes)


class GLMObjective:
    """f and ∇f of the models above on one rank's shard, with the interface of
    linear_family.LinearObjective (`sums`, `value_grad`, `d` = length of θ, `lm.margins`):

        buf = obj.sums(theta)          # this rank's [Σ∇ℓᵢ (d·K + K), Σℓᵢ]
        world.allreduce(buf)           # in the algorithm's step()
        f, g = obj.value_grad(buf, theta)
    """

    def __init__(self, shard, labels, loss, l2, intercept):
        self.X = shard.X
        self.labels = labels
        self.kind, self.K = labels.kind, labels.K
        self.nf, self.n, self.l2 = shard.d, shard.n, float(l2)
        self.fit_b = bool(intercept)
        self.nw = self.nf * self.K
        self.d = self.nw + (self.K if self.fit_b else 0)
        self.loss = LOSSES[loss]
        y = np.asarray(shard.y, dtype=np.float64)
        if self.kind == "multinomial":
            self.idx = y.astype(np.intp)
        elif self.kind == "ovr":
            self.Y = np.where(y[:, None] == np.arange(self.K)[None, :], 1.0, -1.0)
        else:
            self.Y = y[:, None]
        self.buf = np.empty(self.d + 1)
        self.lm = self

    def split(self, theta):
        """(W (d × K), b (K) or None) as views of θ."""
        W = theta[:self.nw].reshape(self.nf, self.K)
        return W, (theta[self.nw:self.d] if self.fit_b else None)

    def margins(self, theta, out=None):
        """M = XW + b (rows × K); `out` is ignored (no margin cache: the plain line search)."""
        W, b = self.split(theta)
        M = np.asarray(self.X @ W, dtype=np.float64)
        return M + b if b is not None else M

    def loss_and_dloss(self, M):
        """(Σᵢ ℓᵢ, ∂ℓ/∂M) for margins M of this shard."""
        if self.kind == "multinomial":
            rows = np.arange(M.shape[0])
            mx = M.max(axis=1, keepdims=True) if M.shape[0] else M[:, :1]
            E = np.exp(M - mx)
            s = E.sum(axis=1, keepdims=True)
            loss = float(np.sum(mx[:, 0] + np.log(s[:, 0]) - M[rows, self.idx]))
            G = E / s
            G[rows, self.idx] -= 1.0
            return loss, G
        return float(np.sum(self.loss.value(self.Y, M))), self.loss.deriv(self.Y, M)

    def sums(self, theta, margins=None):
        loss, G = self.loss_and_dloss(self.margins(theta))
        XtG = self.X.T @ G
        self.buf[:self.nw] = np.asarray(XtG).ravel()
        if self.fit_b:
            self.buf[self.nw:self.d] = G.sum(axis=0)
        self.buf[self.d] = loss
        return self.buf

    def value_grad(self, buf, theta):
        """(f(θ), ∇f(θ)) from the reduced sums (the intercepts are not regularised)."""
        w = theta[:self.nw]
        g = buf[:self.d] / self.n
        g[:self.nw] += self.l2 * w
        return buf[self.d] / self.n + 0.5 * self.l2 * float(w @ w), g


def objective(ctx, name):
    """The objective of a linear job on ctx.train (collective: labels are decided over all
    ranks): linear_family.LinearObjective for a model without intercept and one column (the
    kernels and the cached-margin line search), else a GLMObjective. Its `labels` says which."""
    from ..algorithms.linear_family import LinearObjective
    m = ctx.model
    from ..runtime import collectively
    labels = collectively(ctx.world, prepare, ctx.world, ctx.train, ctx.job, name)
    if labels.K == 1 and not m.get("intercept"):
        obj = LinearObjective(ctx.train, m["loss"], m["l2"], values=m["values"])
    elif m["values"] != "float64":  # the same labels and job on every rank: one line
        err = JobError(f"[model] values = {m['values']!r} applies to binary models without "
                       f"intercept; this {labels.kind} model needs \"float64\"")
        err.collective = True
        raise err
    else:
        obj = GLMObjective(ctx.train, labels, m["loss"], m["l2"], m.get("intercept"))
    obj.labels = labels
    return obj


def one_vs_rest_labels(ctx, name):
    """Labels("ovr", K, classes) when the training labels hold more than two classes and
    `name` fits binary models only (LinearAlgorithm then builds algorithms/multiclass.py's
    OneVsRest, with ctx.train.y the class indices); None otherwise. Collective."""
    from ..runtime import collectively
    if "multiclass" in CAPABLE.get(name, set()) or ctx.model["loss"] == "squared" \
            or ctx.job["data"]["positive"]:
        return None
    return collectively(ctx.world, _one_vs_rest, ctx, name)


def _one_vs_rest(ctx, name):
    world, shard = ctx.world, ctx.train
    mine = np.unique(shard.y)
    vals = np.unique(np.concatenate(world.gather_obj(mine)))
    if vals.size <= 2:
        return None
    if multiclass_kind(name, ctx.model) == "multinomial":
        raise JobError(f"[model] multiclass = \"multinomial\": {name} fits one-vs-rest only "
                       f"(multiclass = \"ovr\" or \"auto\"); algorithms that fit a "
                       f"multinomial model: {capable('multiclass')}")
    return prepare(world, shard, ctx.job, name, ovr_ok=True)


def final_model(obj, theta):
    """final.h5 arrays: `model/w` (d, or d × K), `model/intercept` (K) when fitted, and
    `meta/classes` (the class values in order) when the labels decided them."""
    labels = obj.labels
    if isinstance(obj, GLMObjective):
        W, b = obj.split(theta)
        out = {"model/w": W[:, 0].copy() if obj.K == 1 else W.copy()}
        if b is not None:
            out["model/intercept"] = b.copy()
    else:
        out = {"model/w": theta}
    if labels.classes is not None:
        out["meta/classes"] = classes_array(labels.classes)
    return out


def evaluate(ctx, model):
    """`mpitrain eval` of a final model on the test data (or train): objective, mean loss and
    accuracy (classification) or R² (regression). Test labels are mapped through the model's
    classes; a label the model does not know is a DataError naming it."""
    shard = ctx.test if ctx.test is not None else ctx.train
    m, world = ctx.model, ctx.world
    W = np.asarray(model["model/w"], dtype=np.float64)
    W2 = W.reshape(W.shape[0], -1)
    K = W2.shape[1]
    b = model.get("model/intercept")
    classes = model.get("meta/classes")
    if m["loss"] == "squared":
        kind, y = "regression", shard.y
    elif ctx.job["data"]["positive"] or classes is None:
        kind, y = "binary", shard.y
    else:
        from ..runtime import collectively
        idx = collectively(world, _class_index, world, shard, classes)
        if K == 1:
            kind, y = "binary", np.where(idx == 1, 1.0, -1.0)
        else:
            kind, y = multiclass_kind(ctx.job["job"]["algorithm"], m), idx
    labels = Labels(kind, K, classes)
    view = _View(shard, y)
    obj = GLMObjective(view, labels, m["loss"], m["l2"], b is not None)
    theta = np.concatenate([W2.ravel(), np.asarray(b, dtype=np.float64).ravel()]) \
        if b is not None else W2.ravel().copy()
    M = obj.margins(theta)
    loss, _ = obj.loss_and_dloss(M)
    if kind == "regression":
        r = M[:, 0] - y
        stats = [loss, float(r @ r), float(y.sum()), float(y @ y)]
    else:
        pred = M.argmax(axis=1) if K > 1 else np.where(M[:, 0] >= 0, 1.0, -1.0)
        stats = [loss, float(np.sum(pred == y))]
    tot = np.array(stats)
    world.allreduce(tot)
    w = theta[:obj.nw]
    out = {"data": "test" if ctx.test is not None else "train", "rows": shard.n,
           "objective": tot[0] / shard.n + 0.5 * float(m["l2"]) * float(w @ w),
           "mean_loss": tot[0] / shard.n}
    if kind == "regression":
        ss_tot = tot[3] - tot[2] ** 2 / shard.n
        out["r2"] = 1.0 - tot[1] / ss_tot if ss_tot > 0 else float("nan")
    else:
        out["accuracy"] = tot[1] / shard.n
    return out


def _class_index(world, shard, classes):
    """This shard's labels as indices into the model's `classes` (collective: a label the
    model does not know is refused on every rank, naming the first such row)."""
    names = getattr(shard, "classes", None)
    raw = np.asarray(names)[shard.y.astype(np.intp)] if names is not None else shard.y
    cl = np.asarray(classes)
    if cl.dtype.kind in "USO" or names is not None:
        cl, raw = cl.astype(str), np.asarray(raw).astype(str)
    bad = _first_row(world, shard, ~np.isin(raw, cl))
    if bad < shard.n:
        if shard.start <= bad < shard.stop:
            raise DataError(f"{shard.path}: row {bad}: label {raw[bad - shard.start]} is not a "
                            f"class of the model (classes {', '.join(map(str, cl))})")
        return None  # the rank holding that row raises; collectively() reports it everywhere
    return np.searchsorted(cl, raw).astype(np.float64)


class _View:
    """A shard with other labels (evaluation without touching the loaded shard)."""

    def __init__(self, shard, y):
        self.X, self.y, self.d, self.n = shard.X, y, shard.d, shard.n


def scores(X, W, b):
    """Decision scores X·W + b (n × K) for prediction, one column at a time by the training
    kernels so that a row's score does not depend on the other rows given with it."""
    from .._kernels import linear as K
    if sp.issparse(X):
        X.sort_indices()
    out = np.empty((X.shape[0], W.shape[1]))
    col = np.empty(X.shape[0])
    for k in range(W.shape[1]):
        w = np.ascontiguousarray(W[:, k], dtype=np.float64)
        if sp.issparse(X):
            K.csr_margins(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data, w, col)
        else:
            K.dense_margins(X, w, col)
        out[:, k] = col
    if b is not None:
        out += np.asarray(b, dtype=np.float64).reshape(1, -1)
    return out
