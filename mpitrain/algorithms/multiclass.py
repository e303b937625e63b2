"""One-vs-rest for the linear algorithms that fit binary models only (fadl; see
models/glm.py): given K > 2 classes, K binary problems "class k (+1) against the rest (−1)",

    f_k(w_k) = (1/n) Σᵢ ℓ(y_ik, w_kᵀxᵢ) + (l2/2)‖w_k‖²,   y_ik = +1 if yᵢ = class k else −1,

solved ONE AFTER ANOTHER inside one run by K instances of the algorithm (each with its own
view of the training shard, set up at the start: K initial evaluations). A step is a step of
the current problem; the run finishes when the K-th does. The model is W = [w_1 … w_K] (d × K),
predicting the class of the highest score (scikit-learn's one-vs-rest). The checkpoint holds
every instance's declared state under `subs/k/...` and the index of the current problem, so
a stopped run resumes where it was (and a raised cap reopens the problems that hit it).

`OneVsRest(cls, ctx)` is what LinearAlgorithm.__new__ returns for such labels.
"""
import copy

import numpy as np

from ..models.glm import classes_array
from ..state import Int
from .base import Algorithm


class OneVsRest(Algorithm):
    STATE = {"cur": Int()}

    def __init__(self, cls, ctx, labels):
        super().__init__(ctx)
        self.cls, self.labels = cls, labels
        self.name = cls.name
        self.CAPS = {}
        y = np.asarray(ctx.train.y)
        self.subs = []
        for k in range(labels.K):
            shard = copy.copy(ctx.train)
            shard.y = np.where(y == k, 1.0, -1.0)   # y holds class indices (glm.prepare)
            sub_ctx = copy.copy(ctx)
            sub_ctx.train = shard
            sub = object.__new__(cls)
            sub.__init__(sub_ctx)
            self.subs.append(sub)
        self.cur = 0

    def setup(self):
        for sub in self.subs:  # collective: every rank sets up the K problems in order
            sub.setup()
        self._advance()

    def _advance(self):
        while self.cur < len(self.subs) and self.subs[self.cur].done:
            self.cur += 1
        if self.cur == len(self.subs):
            reasons = sorted({s.reason for s in self.subs})
            self.finish(f"one-vs-rest, {len(self.subs)} problems: " + "; ".join(reasons))

    def state_fields(self):
        out = super().state_fields()
        for k, sub in enumerate(self.subs):
            out.update({f"subs/{k}/{name}": kind for name, kind in sub.state_fields().items()})
        return out

    def restored(self):
        for sub in self.subs:
            sub.restored()  # a raised cap reopens a problem that stopped at it
        self.cur, self.finished, self.reason = 0, False, ""
        self._advance()

    def step(self):
        k = self.cur
        out = dict(self.subs[k].step())
        out["problem"] = k
        self._advance()
        return out

    def final_model(self):
        W = np.column_stack([np.asarray(s.w, dtype=np.float64) for s in self.subs])
        out = {"model/w": W}
        if self.labels.classes is not None:
            out["meta/classes"] = classes_array(self.labels.classes)
        return out

    def summary_info(self):
        info = {"problems": len(self.subs), "stop_reason": self.reason}
        for k, s in enumerate(self.subs):
            info.update({f"problem{k}_{key}": v for key, v in s.summary_info().items()
                         if key in ("objective", "iterations", "stop_reason", "cert_gap")})
        return info
