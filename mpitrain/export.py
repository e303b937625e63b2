"""`mpitrain export RUN_DIR --format npz|sklearn`: a trained model for other programs.

npz      every array of final.h5 under its name without the `model/` prefix (`w`, `W1`,
         `classes`, ...) plus `metadata`: the manifest as a JSON string.
sklearn  a pickled, fitted scikit-learn estimator whose predictions equal mpitrain's (its
         coef_, intercept_ and classes_ are set directly): logistic loss → LogisticRegression,
         squared hinge → LinearSVC, squared loss → Ridge; `unit_rows` normalisation →
         a Pipeline(Normalizer(), estimator). Only linear models have an equivalent; others are
         refused (use npz).
"""
import json
import os
import pickle

import numpy as np

from . import fileio
from .api import load
from .errors import UsageError


def export(run, fmt, out=None):
    """Write the export of `run` (a run directory or final.h5); returns the output path."""
    model = load(run)
    base = os.path.dirname(model.meta["path"])
    if fmt == "npz":
        out = out or os.path.join(base, "model.npz")
        fileio.atomic_write(out, _npz_bytes(model), what="the exported model")
    elif fmt == "sklearn":
        est = sklearn_estimator(model)
        out = out or os.path.join(base, "model.pkl")
        fileio.atomic_write(out, pickle.dumps(est), what="the exported model")
    else:
        raise UsageError(f"unknown export format {fmt!r}; known: npz, sklearn")
    return out


def _npz_bytes(model):
    import io
    arrays = {name.split("/", 1)[-1]: np.asarray(a) for name, a in model.arrays.items()}
    meta = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
            for k, v in model.meta.items()}
    buf = io.BytesIO()
    np.savez(buf, metadata=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def sklearn_estimator(model):
    """The fitted scikit-learn equivalent of a linear model (UsageError otherwise)."""
    if model.family != "linear":
        raise UsageError(f"{model.meta['path']}: {model.family} model ({model.algorithm}) "
                         "has no scikit-learn equivalent; use --format npz")
    try:
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import Normalizer
        from sklearn.svm import LinearSVC
    except ImportError:
        raise UsageError("export --format sklearn needs scikit-learn: pip install scikit-learn")
    m = model.meta
    n, l2 = int(m.get("train_rows", 1)), float(m.get("l2", 0.0))
    C = 1.0 / (n * l2) if l2 > 0 else np.inf  # the same objective, scikit-learn's scaling
    if model.loss == "logistic":
        est = LogisticRegression(C=C if np.isfinite(C) else 1.0,
                                 penalty="l2" if np.isfinite(C) else None,
                                 fit_intercept=bool(m.get("fit_intercept", 0)))
    elif model.loss == "squared_hinge":
        est = LinearSVC(C=C if np.isfinite(C) else 1.0, loss="squared_hinge",
                        fit_intercept=bool(m.get("fit_intercept", 0)))
    elif model.loss == "squared":
        est = Ridge(alpha=n * l2, fit_intercept=bool(m.get("fit_intercept", 0)))
    else:
        raise UsageError(f"{m['path']}: loss {model.loss!r} has no scikit-learn equivalent; "
                         "use --format npz")
    l1 = float(m.get("l1", 0.0))
    if l1 > 0 and model.loss == "logistic":  # C·Σℓ + ((1−ρ)/2)‖w‖² + ρ‖w‖₁, same optimum
        est.set_params(penalty="elasticnet", solver="saga", l1_ratio=l1 / (l1 + l2),
                       C=1.0 / (n * (l1 + l2)))
    if model.coef.ndim == 2:  # K classes (models/glm.py): coef_ is K × d
        est.coef_ = model.coef.T.copy()
        est.intercept_ = np.asarray(model.intercept, dtype=np.float64).copy()
        est.classes_ = np.asarray(model.classes).copy()
        if model.loss == "logistic" and m.get("multiclass") == "ovr":
            est = _one_vs_rest(est, model)
    elif model.loss == "squared":
        est.coef_ = model.coef.copy()
        est.intercept_ = float(model.intercept)
    else:
        est.coef_ = model.coef.reshape(1, -1).copy()
        est.intercept_ = np.array([model.intercept])
        est.classes_ = np.asarray(model.classes).copy()
    est.n_features_in_ = model.features
    if m.get("normalize", "none") == "unit_rows":
        pipe = make_pipeline(Normalizer(norm="l2"), est)
        pipe[0].fit(np.zeros((1, model.features)))
        return pipe
    return est


def _one_vs_rest(est, model):
    """scikit-learn's one-vs-rest logistic model: K fitted binary LogisticRegressions (class k
    against the rest) in a OneVsRestClassifier, predicting the class of the highest score."""
    from sklearn.base import clone
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import LabelBinarizer
    ovr = OneVsRestClassifier(clone(est))
    ovr.label_binarizer_ = LabelBinarizer().fit(np.asarray(model.classes))
    ovr.classes_ = ovr.label_binarizer_.classes_
    ovr.estimators_ = []
    for k in range(est.coef_.shape[0]):
        e = clone(est)
        e.coef_, e.intercept_ = est.coef_[k:k + 1].copy(), est.intercept_[k:k + 1].copy()
        e.classes_, e.n_features_in_ = np.array([0, 1]), model.features
        ovr.estimators_.append(e)
    return ovr
