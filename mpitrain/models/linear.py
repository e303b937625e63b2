"""Linear classifiers on one shard.

Every linear algorithm minimises the same objective (mean convention, no intercept):

    f(w) = (1/n) Σᵢ ℓ(yᵢ, wᵀxᵢ) + (l2/2)‖w‖² + l1‖w‖₁

with n the GLOBAL number of rows and ℓ a loss of the table in models/losses.py, so
scikit-learn's C = 1/(n·l2). A rank computes only the sums over its own rows; the
algorithm adds them up with one Allreduce and applies the regulariser.
"""
import numpy as np

from .._kernels import linear as K
from .losses import LOSSES


class LinearShard:
    """Loss, gradient and margins of a linear model on one Shard (dense or CSR)."""

    def __init__(self, shard, loss="logistic"):
        self.shard = shard
        self.code = LOSSES[loss].code
        self.y = np.ascontiguousarray(shard.y, dtype=np.float64)
        self.n = shard.n
        self.d = shard.d
        self._coef = np.empty(shard.rows, dtype=np.float64)

    def margins(self, w, out=None):
        """out[i] = wᵀxᵢ for this shard's rows."""
        s = self.shard
        out = np.empty(s.rows, dtype=np.float64) if out is None else out
        if s.sparse:
            K.csr_margins(s.X.indptr, s.X.indices, s.X.data, w, out)
        else:
            K.dense_margins(s.X, w, out)
        return out

    def rmatvec(self, coef, out=None):
        """out = Xᵀcoef (this shard's rows)."""
        s = self.shard
        out = np.empty(self.d, dtype=np.float64) if out is None else out
        if s.sparse:
            t = s.XT
            K.csr_rmatvec(t.indptr, t.indices, t.data, coef, out)
        else:
            K.dense_rmatvec(s.X, coef, out)
        return out

    def loss_grad_sums(self, w, out, margins=None):
        """Fill out[:d] = Σᵢ∈shard ∇ℓᵢ(w) and out[d] = Σᵢ∈shard ℓᵢ(w) (the buffer one
        Allreduce sums over ranks). Returns the margins used."""
        m = self.margins(w, margins)
        out[self.d] = K.loss_dloss(self.code, self.y, m, self._coef)
        self.rmatvec(self._coef, out[:self.d])
        return m

    def loss_sum(self, margins):
        return K.loss_sum(self.code, self.y, margins)

    def accuracy_counts(self, w):
        """(correct predictions, rows) on this shard (sign of the margin; 0 counts as +1)."""
        m = self.margins(w)
        pred = np.where(m >= 0, 1.0, -1.0)
        return int(np.sum(pred == self.y)), self.shard.rows


def regularized(loss_mean, w, l2, l1=0.0):
    """f(w) from the mean loss: loss_mean + (l2/2)‖w‖² + l1‖w‖₁."""
    f = loss_mean + 0.5 * l2 * float(w @ w)
    if l1:
        f += l1 * float(np.abs(w).sum())
    return f
