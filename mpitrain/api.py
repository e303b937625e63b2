"""Use a trained model from Python: numpy in, numpy out, no MPI.

    import mpitrain
    m = mpitrain.load("runs/lbfgs-digits-2vr")     # a run directory or its final.h5
    m.predict(X)                # linear: labels (original values); networks: codes
    m.decision_function(X)      # linear: scores wᵀx + b
    m.predict_proba(X)          # logistic loss only: [P(class 0), P(class 1)] per row
    m.encode(X), m.reconstruct(X)   # autoencoders, ParMAC (codes uint8), MAC/backprop
    m.codes(X)                  # ParMAC: binary codes (n × L, uint8 0/1)

X is a dense array or a scipy sparse matrix with the model's feature count (a narrower sparse
matrix is widened); rows get the training data's normalisation (`unit_rows`) first, exactly
as the data loader applied it in training. `mpitrain predict` runs the same code on each
rank's rows, so the CLI and this API give the same numbers.
"""
import json

import numpy as np
import scipy.sparse as sp

from . import model_file
from .models import glm
from .errors import DataError, UsageError


def load(path):
    """The model of a run directory or a final.h5 (see the module docstring)."""
    meta, arrays = model_file.read(path)
    return _CLASSES[meta["family"]](meta, arrays)


def normalize_rows(X, how):
    """The data loader's row scaling (data._finish) on X (dense: in X's dtype)."""
    if how != "unit_rows":
        return X
    if sp.issparse(X):
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ X)
    norms = np.linalg.norm(X, axis=1)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(X / norms[:, None].astype(X.dtype))


class Model:
    """Common part: metadata, input checks, normalisation."""

    def __init__(self, meta, arrays):
        self.meta = meta
        self.arrays = arrays
        self.algorithm = meta["algorithm"]
        self.family = meta["family"]
        self.features = int(meta["features"])
        self.job_hash = meta.get("job_hash")
        self.dtype = np.dtype(meta.get("dtype", "float64"))

    def __repr__(self):
        return (f"<mpitrain {self.family} model: {self.algorithm}, {self.features} features, "
                f"{self.meta['path']}>")

    def prepare(self, X):
        """X checked, in the model's dtype and width, normalised as in training."""
        if sp.issparse(X):
            X = sp.csr_matrix(X, dtype=np.float64)
            if X.shape[1] > self.features:
                raise DataError(f"input has {X.shape[1]} features; the model takes "
                                f"{self.features}")
            if X.shape[1] < self.features:
                X = sp.csr_matrix((X.data, X.indices, X.indptr),
                                  shape=(X.shape[0], self.features))
        else:
            X = np.asarray(X)
            if X.ndim == 1:
                X = X.reshape(1, -1)
            if X.ndim != 2 or X.shape[1] != self.features:
                raise DataError(f"input of shape {X.shape}; the model takes "
                                f"{self.features} features per row")
            X = np.ascontiguousarray(X, dtype=self.dtype)
        return normalize_rows(X, self.meta.get("normalize", "none"))

    def dense(self, X):
        """Prepared rows as a dense array of the model's dtype (networks)."""
        X = self.prepare(X)
        if sp.issparse(X):
            X = X.toarray()
        return np.ascontiguousarray(X, dtype=self.dtype)

    def outputs(self, X, reconstruct=False):
        """The datasets `mpitrain predict` writes for rows X (name → array)."""
        out = {"code": self.encode(X)}
        if reconstruct:
            out["reconstruction"] = self.reconstruct(X)
        return out

    def predict(self, X):
        """Networks: the code of each row (see encode)."""
        return self.encode(X)


class LinearModel(Model):
    """score = wᵀx + b (b = 0: no intercept fitted); label = classes[1] if score > 0 else
    classes[0], in the data's original label values."""

    def __init__(self, meta, arrays):
        super().__init__(meta, arrays)
        self.coef = np.asarray(arrays["model/w"], dtype=np.float64)
        b = arrays.get("model/intercept")
        self.intercept = float(np.asarray(b).reshape(-1)[0]) if b is not None \
            else float(meta.get("intercept", 0.0))
        self.classes = np.asarray(arrays["meta/classes"])
        self.loss = meta["loss"]
        if self.coef.ndim == 2:  # K classes (models/glm.py): W is d × K, b has K values
            self.intercept = np.zeros(self.coef.shape[1]) if b is None else \
                np.asarray(b, dtype=np.float64).reshape(-1)
        self.positive = json.loads(meta.get("label_positive", "[]"))

    def decision_function(self, X):
        """Scores wᵀx + b, each row summed by the training kernels (dense rows in feature
        order, CSR rows in the CSR kernel's fixed order), so a row's score does not depend on
        which other rows come with it: `predict` gives the same bits at any number of ranks.
        The same rows given dense and sparse agree to rounding, not bit for bit."""
        from ._kernels import linear as K
        X = self.prepare(X)
        if self.coef.ndim == 2:  # n × K scores XW + b
            return glm.scores(X, self.coef, self.intercept)
        out = np.empty(X.shape[0])
        if sp.issparse(X):
            X.sort_indices()
            K.csr_margins(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data,
                          self.coef, out)
        else:
            K.dense_margins(X, self.coef, out)
        out += self.intercept
        return out

    def _labels(self, score):
        if self.loss == "squared":  # regression
            return score
        if score.ndim == 2:  # K classes: the highest score (multinomial and one-vs-rest)
            return self.classes[np.argmax(score, axis=1)]
        return self.classes[(score > 0).astype(np.intp)]

    def predict(self, X):
        return self._labels(self.decision_function(X))

    def predict_proba(self, X):
        if self.loss != "logistic":
            raise UsageError(f"predict_proba needs the logistic loss; this model's loss is "
                             f"{self.loss!r} (use decision_function)")
        s = self.decision_function(X)
        if s.ndim == 2:  # multinomial: softmax; one-vs-rest: σ(s_k) normalised (scikit-learn)
            e = np.exp(s - s.max(axis=1, keepdims=True)) if self.meta.get(
                "multiclass") == "multinomial" else 1.0 / (1.0 + np.exp(-s))
            return e / e.sum(axis=1, keepdims=True)
        p = 1.0 / (1.0 + np.exp(-s))
        return np.column_stack([1.0 - p, p])

    def outputs(self, X, reconstruct=False):
        if reconstruct:
            raise UsageError("--reconstruct is for autoencoders; a linear model has score and "
                             "label")
        score = self.decision_function(X)
        return {"score": score, "label": self._labels(score)}


class AutoencoderModel(Model):
    """Stacked autoencoder (sae-greedy, dae-stacked, dae-gradual, slp): code = the top
    encoder's activations; reconstruction through the unrolled stack (or dae-gradual's
    direct decoder)."""

    def __init__(self, meta, arrays):
        super().__init__(meta, arrays)
        self.P = {k[len("model/"):]: np.ascontiguousarray(v) for k, v in arrays.items()
                  if k.startswith("model/") and k != "model/layers"}
        self.K = len(meta["layers"]) - 1
        self.code_size = int(meta["code_size"])

    def encode(self, X, chunk=4096):
        from .models import autoencoder as AE
        return AE.encode(self.P, self.dense(X), list(range(1, self.K + 1)),
                         self.meta["activation"], chunk)

    def reconstruct(self, X, chunk=2048):
        from .models import autoencoder as AE
        m = self.meta
        if m["decoder"] == "direct":
            net = AE.direct_net(self.K, m["activation"], m["loss"])
        else:
            net = AE.stack_net(self.K, m["activation"], m["loss"], bool(m["tied"]))
        X = self.dense(X)
        out = np.empty(X.shape, np.float32)
        last = net.layers[-1]
        for s in range(0, X.shape[0], chunk):
            z = net.forward(self.P, X[s:s + chunk])[-1]
            out[s:s + z.shape[0]] = AE.ref_act(z + self.P[last.b], AE.out_act(net.loss))
        return out


class BinaryAutoencoderModel(Model):
    """ParMAC's binary autoencoder: h(x) = step(Ax + a) ∈ {0,1}^L, f(z) = Bz + c."""

    def __init__(self, meta, arrays):
        super().__init__(meta, arrays)
        self.A, self.a = arrays["model/A"], arrays["model/a"]
        self.B, self.c = arrays["model/B"], arrays["model/c"]
        self.code_size = int(meta["code_size"])

    def codes(self, X):
        return (self.dense(X) @ self.A.T + self.a > 0).astype(np.uint8)

    encode = codes

    def reconstruct(self, X):
        return self.codes(X) @ self.B.T + self.c


class NestedModel(Model):
    """MAC/backprop's nested autoencoder: sigmoid hidden layers, linear output; the code is
    the narrowest hidden layer (`code_layer`)."""

    def __init__(self, meta, arrays):
        super().__init__(meta, arrays)
        self.layers, k = [], 1
        while f"model/W{k}" in arrays:
            self.layers.append(np.hstack([arrays[f"model/W{k}"],
                                          arrays[f"model/b{k}"][:, None]]))
            k += 1
        self.code_layer = int(meta["code_layer"])
        self.code_size = int(meta["code_size"])

    def encode(self, X):
        from .models import nested
        return nested.forward(self.dense(X), self.layers)[self.code_layer - 1]

    def reconstruct(self, X):
        from .models import nested
        return nested.forward(self.dense(X), self.layers)[-1]


_CLASSES = {"linear": LinearModel, "autoencoder": AutoencoderModel,
            "binary-autoencoder": BinaryAutoencoderModel, "nested": NestedModel}
