# cython: language_level=3
"""LIBSVM / svmlight text → CSR arrays, for one rank's byte range. No MPI, no file I/O.

Accepted: `label idx:val idx:val ...` per line, '#' comments, blank lines (skipped, not
rows), CRLF, tabs, `qid:N` tokens (ignored), unsorted indices (sorted later by the caller).
Rows to predict may lack the label (`labels` of parse): `idx:val idx:val ...`, label 0.
Rejected (ParseError with the line number inside the buffer): malformed labels or tokens,
NaN/Inf, index 0 with 1-based indices, negative indices, duplicate indices in a row.
"""
from libc.stdlib cimport strtod, strtoll, malloc, realloc, free
from libc.string cimport memchr
from libc.math cimport isfinite
import numpy as np


class ParseError(ValueError):
    """line: 0-based line number inside the parsed buffer; reason: what is wrong."""

    def __init__(self, line, reason):
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


cdef inline bint _is_space(char c) noexcept nogil:
    return c == b' ' or c == b'\t' or c == b'\r' or c == b'\v' or c == b'\f'


cdef struct Buf:
    void* ptr
    Py_ssize_t size
    Py_ssize_t cap
    Py_ssize_t item


cdef int _grow(Buf* b) except -1:
    cdef Py_ssize_t cap = b.cap * 2 if b.cap > 0 else 1024
    cdef void* p = realloc(b.ptr, cap * b.item)
    if p == NULL:
        raise MemoryError()
    b.ptr = p
    b.cap = cap
    return 0


cdef _token(const char* p, const char* end):
    cdef const char* q = p
    while q < end and not _is_space(q[0]):
        q += 1
    return (<bytes>p[:q - p]).decode("utf-8", "replace")[:40]


def parse(bytes text, bint zero_based=False, int labels=1):
    """Parse a whole-lines buffer. Returns (y, indptr, indices, data, max_index, lines)
    where max_index is the largest 0-based feature index seen (-1 if none) and lines the
    number of newline-terminated or final lines consumed. `labels`: 1, every line starts
    with its label; 0, no line has one (its first token is a feature); -1, a line whose
    first token is `idx:val` has none. A row without a label gets label 0."""
    cdef const char* buf = text
    cdef Py_ssize_t n = len(text)
    cdef const char* p = buf
    cdef const char* end = buf + n
    cdef const char* eol
    cdef const char* nl
    cdef const char* q
    cdef char* tail
    cdef double label, val
    cdef long long idx, max_index = -1, row_start
    cdef Py_ssize_t line = 0, k
    cdef bint has_label
    cdef Buf ys, ptrs, inds, vals
    ys.ptr = NULL; ys.size = 0; ys.cap = 0; ys.item = sizeof(double)
    ptrs.ptr = NULL; ptrs.size = 0; ptrs.cap = 0; ptrs.item = sizeof(long long)
    inds.ptr = NULL; inds.size = 0; inds.cap = 0; inds.item = sizeof(int)
    vals.ptr = NULL; vals.size = 0; vals.cap = 0; vals.item = sizeof(double)
    try:
        _grow(&ptrs)
        (<long long*>ptrs.ptr)[0] = 0
        ptrs.size = 1
        while p < end:
            nl = <const char*>memchr(p, b'\n', end - p)
            eol = nl if nl != NULL else end
            q = <const char*>memchr(p, b'#', eol - p)
            if q != NULL:
                eol = q
            while p < eol and _is_space(p[0]):
                p += 1
            if p < eol:
                has_label = labels == 1
                if labels == -1:  # a label is a first token without ':'
                    q = p
                    while q < eol and not _is_space(q[0]) and q[0] != b':':
                        q += 1
                    has_label = q == eol or q[0] != b':'
                label = 0.0
                if has_label:
                    label = strtod(p, &tail)
                    if tail == p or tail > eol or (tail < eol and not _is_space(tail[0])):
                        raise ParseError(line, f"malformed label {_token(p, eol)!r}")
                    if not isfinite(label):
                        raise ParseError(line, f"label is not finite ({_token(p, eol)!r})")
                    p = tail
                row_start = inds.size
                while True:
                    while p < eol and _is_space(p[0]):
                        p += 1
                    if p >= eol:
                        break
                    if eol - p > 4 and p[0] == b'q' and p[1] == b'i' and p[2] == b'd' \
                            and p[3] == b':':
                        while p < eol and not _is_space(p[0]):
                            p += 1
                        continue
                    idx = strtoll(p, &tail, 10)
                    if tail == p or tail >= eol or tail[0] != b':':
                        raise ParseError(line, f"malformed token {_token(p, eol)!r} "
                                         "(expected index:value)")
                    q = tail + 1
                    val = strtod(q, &tail)
                    if tail == q or tail > eol or (tail < eol and not _is_space(tail[0])):
                        raise ParseError(line, f"malformed token {_token(p, eol)!r} "
                                         "(expected index:value)")
                    if not isfinite(val):
                        raise ParseError(line, f"value is not finite in {_token(p, eol)!r}")
                    if not zero_based:
                        if idx == 0:
                            raise ParseError(line, "feature index 0 in 1-based data "
                                             "(set [data] zero_based = true)")
                        idx -= 1
                    if idx < 0 or idx > 2147483646:
                        raise ParseError(line, f"feature index out of range in "
                                         f"{_token(p, eol)!r}")
                    if inds.size == inds.cap:
                        _grow(&inds)
                        _grow(&vals)
                    (<int*>inds.ptr)[inds.size] = <int>idx
                    (<double*>vals.ptr)[vals.size] = val
                    inds.size += 1
                    vals.size += 1
                    if idx > max_index:
                        max_index = idx
                    p = tail
                if ys.size == ys.cap:
                    _grow(&ys)
                (<double*>ys.ptr)[ys.size] = label
                ys.size += 1
                if ptrs.size == ptrs.cap:
                    _grow(&ptrs)
                (<long long*>ptrs.ptr)[ptrs.size] = inds.size
                ptrs.size += 1
            line += 1
            p = (nl + 1) if nl != NULL else end
        y = np.empty(ys.size, dtype=np.float64)
        indptr = np.empty(ptrs.size, dtype=np.int64)
        indices = np.empty(inds.size, dtype=np.int32)
        data = np.empty(vals.size, dtype=np.float64)
        if ys.size:
            y[:] = <double[:ys.size]>ys.ptr
        indptr[:] = <long long[:ptrs.size]>ptrs.ptr
        if inds.size:
            indices[:] = <int[:inds.size]>inds.ptr
            data[:] = <double[:vals.size]>vals.ptr
        return y, indptr, indices, data, max_index, line
    finally:
        free(ys.ptr)
        free(ptrs.ptr)
        free(inds.ptr)
        free(vals.ptr)
