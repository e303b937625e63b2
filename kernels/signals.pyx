# cython: language_level=3
"""Async-signal-safe stop flag, set by a C handler (not numeric, but it must be C).

Python runs its own signal handlers only between bytecodes of the main thread; a rank blocked
inside an MPI collective (because a peer hung or died) would never see SIGTERM. This C
handler records the signal at once: the driver polls `received()` at iteration boundaries, a
watchdog thread can read it while the main thread is blocked, and a second signal ends the
process immediately (status 128 + signal), as users expect from a second Ctrl-C."""
from libc.signal cimport signal as c_signal, SIG_ERR

cdef extern from "unistd.h":
    void _exit(int status) nogil

cdef volatile int _count = 0
cdef volatile int _last = 0


cdef void _handler(int sig) noexcept nogil:
    global _count, _last
    _count += 1
    if _count >= 2:
        _exit(128 + sig)
    _last = sig


def install(signals):
    """Install the handler for each signal number in `signals`."""
    for s in signals:
        if c_signal(<int>s, _handler) == SIG_ERR:
            raise OSError(f"cannot install a handler for signal {s}")


def received():
    """The first signal received (0 if none)."""
    return _last


def reset():
    global _count, _last
    _count = 0
    _last = 0
