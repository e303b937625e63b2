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

HOT_COLUMNS = 65536  # the hot block: uint16 local indices, 512 KB of w or of a partial gradient
HOT_ROW_MULTIPLE = 4  # hot rows padded to a multiple of this many entries (SplitCSR)
HOT_NNZ_PER_COLUMN = 32  # a smaller hot block for small shards: about nnz/32 columns (≥ 1024)
DIRECT_COLUMNS = 1 << 17  # w within 1 MiB (the L2 cache): float64 margins straight from the CSR
TAIL_CHUNKS = 64     # the tail's column chunks (units of parallel work in Xᵀcoef)
TAIL_PARTIALS = 2    # the tail's pieces for the margins: one partial of n doubles each
PANEL_NNZ = 1 << 21  # about this many hot non-zeros per row panel (one partial gradient each)
MAX_PANELS = 64      # an even count (2 threads), at most 64 partial gradients (32 MB)
VALUE_TYPES = {"float64": np.float64, "float32": np.float32}


class SplitCSR:
    """A CSR shard laid out for cache-friendly margins and Xᵀcoef (built once per shard).

    The H most frequent columns ("hot"; H = min(65536, d, the power of two above nnz/32, at
    least 1024) form a CSR block with uint16 local column indices, numbered by decreasing
    frequency (ties to the lower index): their slice of w, and the partial gradient a row panel
    scatters into, are at most 512 KB each and stay in the L2 cache, the most frequent columns
    together in their first lines; each hot row is padded with entries (0, 0.0) to a multiple
    of HOT_ROW_MULTIPLE = 4 (the loops over a row take no branch on its last entries; the
    sums are unchanged while w is finite). The other columns ("tail": rare, each read a few times per
    pass) are kept once, as (column, row, value) entries sorted by column then row, so that w
    is read and the gradient's tail written in column order (streamed) instead of at random:
    the tail's margins are summed into TAIL_PARTIALS partials of n doubles (one per piece of
    the entries, in cache while rows are hit at random), which the hot pass adds up in order.
    When all of w fits in 1 MiB and the values are float64, the margins are computed straight
    from the shard's CSR rows instead (one pass beats two there).

    A loss + gradient (loss_grad) is three passes: the tail's partial margins
    (kernels/linear.pyx tail_margins); one fused pass over the hot block (split_fused: per
    step of up to 512 rows and 32,768 hot non-zeros, the margins, the losses and derivatives,
    then the rows' scatter into their panel's partial gradient, so the hot non-zeros are read
    once from memory); the tail's Xᵀcoef by column and the panel partials summed in panel
    order (split_gather). Its margins have the bits of margins().

    values = "float32" stores the values in single precision (6 instead of 10 bytes per hot
    non-zero); products and sums stay in double, so the results are those of the data
    rounded to float32 (a relative change of at most 2⁻²⁴ per value). Panels and pieces
    depend only on the data, so every result is bit-identical for any thread count."""

    def __init__(self, X, values="float64"):
        n, d = X.shape
        vt = VALUE_TYPES[values]
        self.direct = values == "float64" and d <= DIRECT_COLUMNS
        indptr = np.asarray(X.indptr, dtype=np.int64)
        if self.direct:  # the shard's own arrays (no copy when already int64/int32/float64)
            self.rows_csr = (indptr, np.asarray(X.indices, dtype=np.int32),
                             np.asarray(X.data, dtype=np.float64))
        # Temporaries are freed as soon as they are dead: layout_bytes bounds the peak.
        cols = np.asarray(X.indices, dtype=np.int64)
        rows = np.repeat(np.arange(n, dtype=np.int32), np.diff(indptr))
        H = _hot_width(cols.size, d)
        if H == d:
            self.hot = np.arange(d, dtype=np.int32)
        else:  # by decreasing count (negated in place), ties to the lower index
            count = np.bincount(cols, minlength=d)
            np.negative(count, out=count)
            self.hot = np.argsort(count, kind="stable")[:H].astype(np.int32)
            del count
        local = np.full(d, -1, dtype=np.int64)
        local[self.hot] = np.arange(H)
        lk = local[cols]
        del local
        ish = lk >= 0
        self.hptr = _row_pointer(rows[ish], n)
        self.hidx = lk[ish].astype(np.uint16)
        del lk
        self.hval = X.data[ish].astype(vt, copy=False)  # the mask already copied
        tail = ~ish
        del ish
        tidx = cols[tail].astype(np.int32)
        del cols
        trow = rows[tail]
        del rows
        tval = X.data[tail].astype(vt, copy=False)
        del tail
        by_col = np.argsort(tidx, kind="stable")  # rows stay in order within a column
        self.tcol = tidx[by_col]
        del tidx
        self.trow = trow[by_col]
        del trow
        self.tcval = tval[by_col]
        del tval, by_col
        self.tcut = _chunks_at_column_starts(self.tcol, TAIL_CHUNKS)
        tnnz = int(self.tcol.size)
        C = 0 if self.direct or tnnz == 0 else min(TAIL_PARTIALS, tnnz)
        self.mcut = np.linspace(0, tnnz, C + 1).astype(np.int64)  # the margins' pieces
        self.tpart = np.empty((C, n), dtype=np.float64)  # their partial margins
        self.hot_nnz = int(self.hidx.size)  # before the padding
        if H:
            self.hptr, self.hidx, self.hval = _pad_rows(self.hptr, self.hidx, self.hval)
        hnnz = int(self.hidx.size)
        P = _panel_count(hnnz, n)
        self.panels = np.searchsorted(self.hptr, np.linspace(0, hnnz, P + 1)).astype(np.int64)
        self.panels[0], self.panels[-1] = 0, n
        self.part = np.empty((P, H), dtype=np.float64)  # a partial Xᵀcoef per row panel
        self.ploss = np.empty(P, dtype=np.float64)
        self.whot = None if H == d or self.direct else np.empty(H, dtype=np.float64)

    def _margin_rows(self, w):
        """Fill tpart with the tail's partial margins (none when direct); return the margin
        rows that give the rest and the w they index."""
        if self.direct:
            return self.rows_csr, w
        K.tail_margins(self.mcut, self.tcol, self.trow, self.tcval, w, self.tpart)
        wm = w
        if self.whot is not None:  # the hot slice of w, in cache during the hot pass
            wm = self.whot
            K.take(w, self.hot, wm)
        return (self.hptr, self.hidx, self.hval), wm

    def margins(self, w, out):
        """out[i] = x_iᵀw (the same bits as loss_grad's margins)."""
        rows, wm = self._margin_rows(w)
        K.split_margins(self.tpart, *rows, wm, out)

    def loss_grad(self, code, y, w, margins, coef, out):
        """The loss + gradient passes (see the class): fills margins = Xw, coef[i] =
        dℓ/dm(yᵢ, mᵢ) and out = Xᵀcoef; returns Σᵢ ℓ(yᵢ, mᵢ)."""
        rows, wm = self._margin_rows(w)
        f = K.split_fused(code, y, self.tpart, *rows, wm, self.hptr, self.hidx, self.hval,
                          self.panels, self.part, self.ploss, margins, coef)
        K.split_gather(self.hot, self.part, self.tcut, self.tcol, self.trow, self.tcval, coef,
                       out)
        return f

    def rmatvec(self, coef, out):
        K.split_scatter(self.hptr, self.hidx, self.hval, self.panels, self.part, coef)
        K.split_gather(self.hot, self.part, self.tcut, self.tcol, self.trow, self.tcval, coef,
                       out)


def layout_bytes(shard, values="float64"):
    """Upper bound of the bytes SplitCSR adds for a CSR shard while it is built and kept (0 for
    dense rows): kept, 2 + v bytes per hot and 8 + v per tail non-zero (v = 8 for float64
    values, 4 for float32), the hot rows' padding (up to HOT_ROW_MULTIPLE - 1 entries of
    2 + v bytes per row), the row pointer, the tail's partial margins (8·TAIL_PARTIALS
    bytes per row), the row panels' partial gradients and the copy of w's hot slice; while
    building, 33 bytes per non-zero of temporaries (at most about 25 alive at once: int64
    columns and local ids, int32 rows, masks; the rest leaves room for a sort's buffer), a
    row pointer's counts and 3 int64 vectors of the width (counts, order, local ids). The
    kept layout is counted as all-tail (the worst case)."""
    if not getattr(shard, "sparse", False):
        return 0
    nnz, n, d = int(shard.nnz), int(shard.rows), int(shard.d)
    v = np.dtype(VALUE_TYPES[values]).itemsize
    return ((8 + v + 33) * nnz + 24 * d + 8 * (2 + TAIL_PARTIALS) * (n + 1)
            + (HOT_ROW_MULTIPLE - 1) * (2 + v) * n
            + 8 * (_panel_count(nnz, n) + 2) * _hot_width(nnz, d))


def _hot_width(nnz, d):
    """H, the hot block's width (SplitCSR)."""
    return min(HOT_COLUMNS, d, max(1024, 1 << int(nnz // HOT_NNZ_PER_COLUMN).bit_length()))


def _panel_count(hnnz, n):
    """The row panels of a hot block of hnnz non-zeros over n rows (SplitCSR)."""
    return 1 if n < 2 else 2 * min(MAX_PANELS // 2, max(1, -(-hnnz // (2 * PANEL_NNZ))))


def _pad_rows(ptr, idx, val):
    """The CSR rows (ptr, idx, val), each padded with entries (0, 0.0) to a multiple of
    HOT_ROW_MULTIPLE entries: the hot loops (mpt_dot, mpt_scatter) then take no branch on a
    row's last entries. 0.0·w[hot[0]] adds nothing to a margin (exactly, w finite) and 0.0
    nothing to a gradient."""
    count = np.diff(ptr)
    pptr = np.zeros_like(ptr)
    np.cumsum(-(-count // HOT_ROW_MULTIPLE) * HOT_ROW_MULTIPLE, out=pptr[1:])
    pos = np.repeat(pptr[:-1] - ptr[:-1], count)
    pos += np.arange(idx.size)
    pidx = np.zeros(pptr[-1], dtype=idx.dtype)
    pidx[pos] = idx
    pval = np.zeros(pptr[-1], dtype=val.dtype)
    pval[pos] = val
    return pptr, pidx, pval


def _row_pointer(rows, n):
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=ptr[1:])
    return ptr


def _chunks_at_column_starts(col, chunks):
    """Boundaries of about `chunks` equal pieces of `col` (sorted), each at a column start."""
    if col.size == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    want = np.linspace(0, col.size, chunks + 1)[1:-1]
    cut = starts[np.minimum(np.searchsorted(starts, want), starts.size - 1)]
    return np.unique(np.r_[0, cut, col.size]).astype(np.int64)


class LinearShard:
    """Loss, gradient and margins of a linear model on one Shard (dense or CSR).

    A CSR shard is evaluated through its SplitCSR layout (built at the first evaluation and
    kept on the shard, per value type); values = "float32" stores its values in single
    precision (see SplitCSR)."""

    def __init__(self, shard, loss="logistic", values="float64"):
        if values not in VALUE_TYPES:
            raise ValueError(f"values must be one of {sorted(VALUE_TYPES)}, not {values!r}")
        self.shard = shard
        self.code = LOSSES[loss].code
        self.values = values
        self.y = np.ascontiguousarray(shard.y, dtype=np.float64)
        self.n = shard.n
        self.d = shard.d
        self._coef = np.empty(shard.rows, dtype=np.float64)

    @property
    def layout(self):
        """The shard's SplitCSR for this value type, built once (rebuilt if X was replaced)."""
        s = self.shard
        cache = s.__dict__.setdefault("_split_csr", {})
        got = cache.get(self.values)
        if got is None or got[0] is not s.X:
            got = cache[self.values] = (s.X, SplitCSR(s.X, self.values))
        return got[1]

    def margins(self, w, out=None):
        """out[i] = wᵀxᵢ for this shard's rows."""
        s = self.shard
        out = np.empty(s.rows, dtype=np.float64) if out is None else out
        if s.sparse:
            self.layout.margins(w, out)
        else:
            K.dense_margins(s.X, w, out)
        return out

    def rmatvec(self, coef, out=None):
        """out = Xᵀcoef (this shard's rows)."""
        s = self.shard
        out = np.empty(self.d, dtype=np.float64) if out is None else out
        if s.sparse:
            self.layout.rmatvec(coef, out)
        else:
            K.dense_rmatvec(s.X, coef, out)
        return out

    def loss_grad_sums(self, w, out, margins=None):
        """Fill out[:d] = Σᵢ∈shard ∇ℓᵢ(w) and out[d] = Σᵢ∈shard ℓᵢ(w) (the buffer one
        Allreduce sums over ranks), and self._coef[i] = dℓ/dm at the margins. Returns the
        margins (in `margins` when given; the bits of margins(w)). A CSR shard takes the
        fused pass of its SplitCSR (loss_grad)."""
        s = self.shard
        m = np.empty(s.rows, dtype=np.float64) if margins is None else margins
        if s.sparse:
            out[self.d] = self.layout.loss_grad(self.code, self.y, w, m, self._coef,
                                                out[:self.d])
            return m
        K.dense_margins(s.X, w, m)
        out[self.d] = K.loss_dloss(self.code, self.y, m, self._coef)
        K.dense_rmatvec(s.X, self._coef, out[:self.d])
        return m

    def loss_sum(self, margins):
        return K.loss_sum(self.code, self.y, margins)

    def accuracy_counts(self, w, margins=None):
        """(correct predictions, rows) on this shard (sign of the margin; 0 counts as +1);
        `margins`, when the caller already has this shard's margins of w, saves a pass."""
        m = self.margins(w) if margins is None else margins
        pred = np.where(m >= 0, 1.0, -1.0)
        return int(np.sum(pred == self.y)), self.shard.rows


def regularized(loss_mean, w, l2, l1=0.0):
    """f(w) from the mean loss: loss_mean + (l2/2)‖w‖² + l1‖w‖₁."""
    f = loss_mean + 0.5 * l2 * float(w @ w)
    if l1:
        f += l1 * float(np.abs(w).sum())
    return f
