"""The one way mpitrain writes files: atomically, durably, and with one clear error.

Every file the program writes (checkpoints, final.h5, summary.json, job.toml, metrics.jsonl,
`data convert/synth/prepare` outputs, test fixtures) goes through this module.

Whole files (:func:`atomic_write`, :func:`atomic_open`, :func:`write_h5`):

1. the content goes to a temporary name in the same directory (``<path>.tmp<pid>``, so the
   rename below stays within one file system);
2. it is flushed and fsync'ed;
3. ``os.replace`` puts it over ``path`` (readers see the old file or the new one, never a part);
4. the directory is fsync'ed, so the rename itself survives a crash.

If anything fails, the temporary file is removed (no ``.tmp`` is left behind) and ``path`` is
untouched. An ``OSError`` (full disk, RLIMIT_FSIZE, read-only or missing directory,
permissions) becomes :class:`~mpitrain.errors.OutputError` (exit 73) with one line naming the
path and the reason; any other exception is re-raised unchanged after the clean-up.

HDF5 writing straight to a disk that fills up (or past RLIMIT_FSIZE) crashes the process
(SIGSEGV when h5py frees the failed file). So HDF5 files are either built in memory
(:func:`h5_image`, :func:`write_h5`) and written with plain file I/O, or, when they are too big
for memory (streamed outputs of `data convert/synth`), written by HDF5 into a temporary file
whose disk space was reserved beforehand (:func:`atomic_h5`: an upper bound of the file size,
checked against RLIMIT_FSIZE and reserved with ``fallocate(FALLOC_FL_KEEP_SIZE)``, or checked
against the free space where the file system cannot reserve), so that HDF5 never meets a
full disk.

Append-only logs (:class:`LineLog`, :func:`append_line`): each line is written whole with one
``write`` and flushed to the operating system at once (a crash of the process loses nothing
written); it is fsync'ed when the log is closed (a crash of the machine may lose the lines
since the last close, never corrupt earlier ones). A failed write truncates the partial line
away when it can and raises OutputError.

Python ignores SIGXFSZ, so exceeding RLIMIT_FSIZE is an ``OSError`` (EFBIG) here, not a kill.
"""
import contextlib
import errno
import io
import os
import resource

from .errors import OutputError

__all__ = ["atomic_write", "atomic_open", "write_h5", "h5_image", "atomic_h5", "LineLog",
           "append_line", "fsync_dir", "tmp_name", "output_error"]


def output_error(path, exc, what=None):
    """The OutputError for an OSError `exc` met while writing `path` (one line)."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return OutputError(f"{path}: cannot write{' ' + what if what else ''}: {reason}")


def tmp_name(path):
    """The temporary name used while `path` is written (same directory, this process)."""
    return f"{os.fspath(path)}.tmp{os.getpid()}"


def fsync_dir(path):
    """fsync directory `path` so that a rename in it is durable (best effort: some file
    systems refuse to fsync a directory, which is not an error)."""
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


@contextlib.contextmanager
def _replacing(path, what=None, makedirs=False):
    """The protocol of every whole-file write: yields the temporary name to write; when the
    block ends cleanly, fsyncs the temporary, renames it over `path` and fsyncs the
    directory. On any failure the temporary is removed; an OSError becomes OutputError."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = tmp_name(path)
    try:
        if makedirs:
            os.makedirs(directory, exist_ok=True)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(directory)
    except OSError as exc:
        _remove_quietly(tmp)
        raise output_error(path, exc, what) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="wb", *, what=None, makedirs=False):
    """``with atomic_open(path, "w") as fh: fh.write(...)`` writes `path` atomically.

    `mode` is ``"w"`` (text, UTF-8) or ``"wb"``. `what` describes the file in the error
    message ("the final model"). With `makedirs`, missing parent directories are created.
    Raises OutputError (exit 73) on any OSError, after removing the temporary file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', not {mode!r}")
    with _replacing(path, what, makedirs) as tmp:
        with open(tmp, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as fh:
            yield fh


def atomic_write(path, data, *, what=None, makedirs=False, midway=None):
    """Write `data` (bytes, bytearray, memoryview such as ``BytesIO.getbuffer()``, or str)
    to `path` atomically; see the module docstring. `midway`, if given, is called once half
    of the bytes are written and flushed (a hook for fault-injection tests)."""
    binary = not isinstance(data, str)
    with atomic_open(path, "wb" if binary else "w", what=what, makedirs=makedirs) as fh:
        if midway is None:
            fh.write(data)
        else:
            half = len(data) // 2
            fh.write(data[:half])
            fh.flush()
            midway()
            fh.write(data[half:])


def h5_image(fill):
    """Build an HDF5 file in memory: ``fill(f)`` populates the open h5py.File `f`; returns
    the file image as a memoryview (pass it to :func:`atomic_write`)."""
    import h5py
    image = io.BytesIO()
    with h5py.File(image, "w", locking=False) as f:
        fill(f)
    return image.getbuffer()


def write_h5(path, fill, *, what=None, makedirs=False):
    """Write the HDF5 file that ``fill(f)`` builds to `path` atomically (built in memory)."""
    data = h5_image(fill)
    try:
        atomic_write(path, data, what=what, makedirs=makedirs)
    finally:
        data.release()


@contextlib.contextmanager
def atomic_h5(path, reserve, *, what=None, makedirs=False):
    """``with atomic_h5(path, reserve) as f:`` (an h5py.File open for writing) writes a large
    HDF5 file atomically; `reserve` is an upper bound of its final size in bytes. The space is
    reserved before HDF5 writes anything; if it cannot be (full disk, file-size limit) this
    raises OutputError at once, and nothing is left behind. Small files: use
    :func:`write_h5`."""
    import h5py
    with _replacing(path, what, makedirs) as tmp:
        reserve = int(reserve)
        _check_fsize_limit(reserve)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            _reserve(fd, os.path.dirname(os.path.abspath(tmp)), reserve)
        finally:
            os.close(fd)
        f = h5py.File(tmp, "w", locking=False)
        try:
            yield f
        finally:
            f.close()  # HDF5 truncates the file to its real size, releasing the reserve


def _mib(nbytes):
    return f"{nbytes / 2**20:.1f} MiB"


def _check_fsize_limit(nbytes):
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if soft != resource.RLIM_INFINITY and nbytes > soft:
        raise OSError(errno.EFBIG, f"File too large: the output needs up to {_mib(nbytes)}, "
                      f"the file-size limit (ulimit -f) is {_mib(soft)}")


_FALLOC_FL_KEEP_SIZE = 1
_libc = None


def _fallocate_keep_size(fd, nbytes):
    """Reserve `nbytes` of disk for `fd` without changing its size; False where the file
    system (or platform) cannot."""
    global _libc
    import ctypes
    import ctypes.util
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fallocate = getattr(_libc, "fallocate", None)
    if fallocate is None:
        return False
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if fallocate(fd, _FALLOC_FL_KEEP_SIZE, 0, nbytes) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


def _reserve(fd, directory, nbytes):
    try:
        if nbytes <= 0 or _fallocate_keep_size(fd, nbytes):
            return
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
    else:
        st = os.statvfs(directory)
        if st.f_bavail * st.f_frsize >= nbytes:
            return
    st = os.statvfs(directory)
    raise OSError(errno.ENOSPC, f"No space left on device: the output needs up to "
                  f"{_mib(nbytes)}, {_mib(st.f_bavail * st.f_frsize)} free")


class LineLog:
    """An append-only text log (metrics.jsonl): ``log = LineLog(path, fresh=True)``,
    ``log.append(line)``, ``log.close()``. With `fresh` the file is emptied first
    (atomically, by an empty replacement); `keep` (a list of lines) is written as the new
    content instead, atomically, for a log truncated after a resumed step."""

    def __init__(self, path, *, fresh=False, keep=None, what=None):
        self.path = os.fspath(path)
        self.what = what
        if fresh or keep is not None:
            atomic_write(self.path, "".join(_line(t) for t in keep or ()), what=what)
        try:
            self.fh = open(self.path, "ab")
        except OSError as exc:
            raise output_error(self.path, exc, what) from None

    def append(self, text):
        if self.fh is None:
            raise ValueError(f"{self.path}: log is closed")
        data = _line(text).encode("utf-8")
        try:
            start = self.fh.tell()
            self.fh.write(data)
            self.fh.flush()
        except OSError as exc:
            self._undo_partial(start)
            raise output_error(self.path, exc, self.what) from None

    def _undo_partial(self, start):
        """After a failed write, cut a partial line away (so that the log stays whole lines)
        and drop the unflushed buffer."""
        fh, self.fh = self.fh, None
        try:
            os.truncate(self.path, start)
        except OSError:
            pass
        try:
            os.close(fh.fileno())  # the buffered bytes could never be written anyway
        except OSError:
            pass
        try:
            fh.close()
        except (OSError, ValueError):
            pass

    def close(self):
        """fsync and close (idempotent)."""
        fh, self.fh = self.fh, None
        if fh is None:
            return
        try:
            fh.flush()
            os.fsync(fh.fileno())
        except OSError as exc:
            raise output_error(self.path, exc, self.what) from None
        finally:
            try:
                fh.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def append_line(path, text, *, what=None):
    """Append one line to `path` (opened, written whole, flushed, fsync'ed, closed)."""
    log = LineLog(path, what=what)
    try:
        log.append(text)
    finally:
        log.close()


def _line(text):
    return text if text.endswith("\n") else text + "\n"
