# cython: language_level=3
"""Async-signal-safe stop flag, set by a C handler, and a C exit guard (they must be C).

Python runs its own signal handlers only between bytecodes of the main thread; a rank blocked
inside an MPI collective (because a peer hung or died) would never see SIGTERM. This C
handler records the signal at once: the driver polls `received()` at iteration boundaries and
the runtime's monitor thread reads it while the main thread is blocked.

Repeated deliveries are one stop. Slurm, systemd, `docker stop` and cgroups signal every
process AND mpiexec/srun forward the same signal, so a rank often gets SIGTERM (or USR1, HUP)
twice within milliseconds: only the first is recorded, later ones of any kind change nothing.
The one exception is a person insisting: a SIGINT that arrives at least `URGENT_GAP` seconds
after an earlier SIGINT (Ctrl-C typed again, not the launcher's copy of the first one) ends
the process at once with status 130.

`guard(True)` arms a C `atexit` check: a process that exits through C `exit()` (any status,
e.g. a library calling exit(0)) while the training loop runs writes one line and ends with
status 1 instead, so the launcher sees a failure, not a success without final.h5."""
from libc.signal cimport signal as c_signal, SIG_ERR, SIGINT
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef extern from "unistd.h":
    void _exit(int status) nogil
    ssize_t write(int fd, const void *buf, size_t count) nogil

cdef extern from "stdlib.h":
    int atexit(void (*func)() noexcept nogil) nogil

URGENT_GAP = 1.0

cdef volatile int _first = 0        # the first stop signal received (0: none)
cdef volatile double _sigint_at = -1.0  # monotonic time of the first SIGINT
cdef double _urgent_gap = URGENT_GAP
cdef volatile int _guarded = 0
cdef int _guard_registered = 0
cdef char _guard_msg[512]
cdef int _guard_len = 0


cdef double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + 1e-9 * ts.tv_nsec


cdef void _handler(int sig) noexcept nogil:
    global _first, _sigint_at
    cdef double t
    if sig == SIGINT:
        t = _now()
        if _sigint_at >= 0.0 and t - _sigint_at >= _urgent_gap:
            _exit(128 + sig)
        if _sigint_at < 0.0:
            _sigint_at = t
    if _first == 0:
        _first = sig


cdef void _at_exit() noexcept nogil:
    if _guarded:
        write(2, _guard_msg, _guard_len)
        _exit(1)


def install(signals):
    """Install the handler for each signal number in `signals`."""
    for s in signals:
        if c_signal(<int>s, _handler) == SIG_ERR:
            raise OSError(f"cannot install a handler for signal {s}")


def received():
    """The first stop signal received (0 if none)."""
    return _first


def guard(bint on, message=b""):
    """Arm (with the line to print) or disarm the exit guard."""
    global _guarded, _guard_registered, _guard_len
    cdef bytes m = bytes(message)[:511]
    if on:
        memcpy(_guard_msg, <char *>m, len(m))
        _guard_len = len(m)
        if not _guard_registered:
            if atexit(_at_exit) != 0:
                raise OSError("cannot register the exit guard")
            _guard_registered = 1
    _guarded = 1 if on else 0
