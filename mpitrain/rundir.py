"""One run per run directory: a lock that rank 0 holds for the life of the job.

The lock is the file OUT/.mpitrain.lock, created with O_CREAT|O_EXCL (atomic on local disks,
NFS v3+ and Lustre), holding JSON: host, pid, the pid's start time and the boot id (so a
recycled pid is not mistaken for the holder), and the start time. Where the file system
supports it, the holder also keeps an flock(2) on it. A heartbeat thread touches the file
every `HEARTBEAT` seconds.

A lock found in place is stale (taken over, with a message) when
- the holder was an earlier run of the same Slurm job (same SLURM_JOB_ID, another
  SLURM_RESTART_COUNT: the job was requeued, Slurm runs one incarnation at a time); or
- the holder ran on this host and its pid is no longer running (or is another process now:
  other start time or boot id) — what a `kill -9` or a crash leaves behind; or
- the holder ran on another host and the file has not been touched for `STALE_AFTER`
  seconds (its heartbeat stopped: the job or its node died).
Otherwise the second run is refused with one line naming the holder (exit 73). Taking over
a stale lock happens under a mkdir mutex (OUT/.mpitrain.lock.takeover) so that two
newcomers cannot both take it.

`set_aside(out)` moves the results of an earlier run (only the names this program writes:
checkpoints/, final.h5, summary.json, metrics.jsonl, job.toml) into OUT/previous-<time>/ with
renames, so a new run never sits beside a stale final.h5 and nothing is deleted.
"""
import atexit
import json
import os
import socket
import threading
import time

from .errors import OutputError, RunDirBusy

LOCK = ".mpitrain.lock"
HEARTBEAT = 30.0
STALE_AFTER = 300.0
RESULTS = ("checkpoints", "final.h5", "summary.json", "metrics.jsonl", "job.toml")

_HELD = {}  # realpath(out) -> RunLock held by this process


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _pid_start(pid):
    """Start time of process `pid` (clock ticks after boot), or None if it is not running
    (a zombie, killed but not yet reaped, is not running: it holds no lock)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return -1  # running, start time unknown (no /proc)


def _describe(holder):
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, started "
            f"{holder.get('started', '?')}")


class RunLock:
    def __init__(self, out):
        self.out = out
        self.path = os.path.join(out, LOCK)
        self.fd = None
        self.info = None
        self._stop = threading.Event()

    # -- taking the lock ----------------------------------------------------------------
    def acquire(self):
        """Take the lock or raise RunDirBusy naming the holder; returns a message about a
        stale lock taken over (or None)."""
        note = None
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder, age = self._read()
                why = self._stale(holder, age)
                if why is None:
                    raise RunDirBusy(f"{self.out} is in use by another run ({_describe(holder)}"
                                     f"; lock {self.path}): wait for it to end, or choose "
                                     "another --out")
                self._take_over(holder, age)
                note = f"{self.path}: took over a stale lock ({_describe(holder)}: {why})"
                continue
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot create the run lock "
                                  f"({exc.strerror or exc})")
            self._write(fd)
            return note
        raise RunDirBusy(f"{self.out}: could not take the run lock {self.path} (other runs "
                         "keep taking it); try again")

    def _write(self, fd):
        pid = os.getpid()
        self.info = {"host": socket.gethostname(), "pid": pid, "pid_start": _pid_start(pid),
                     "boot_id": _boot_id(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                     "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
                     "slurm_restart": os.environ.get("SLURM_RESTART_COUNT", "0")}
        try:
            os.write(fd, json.dumps(self.info).encode())
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            try:
                os.unlink(self.path)
            except OSError:
                pass
            raise OutputError(f"{self.path}: cannot write the run lock ({exc.strerror or exc})")
        try:
            import fcntl
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (ImportError, OSError):
            pass  # no flock on this file system: the lock file and its heartbeat suffice
        self.fd = fd
        _HELD[os.path.realpath(self.out)] = self
        threading.Thread(target=self._heartbeat, name="mpitrain-runlock", daemon=True).start()

    def _read(self):
        """(holder dict, seconds since the file was last touched)."""
        try:
            age = time.time() - os.stat(self.path).st_mtime
            with open(self.path) as fh:
                holder = json.loads(fh.read() or "{}")
            if not isinstance(holder, dict):
                holder = {}
        except FileNotFoundError:
            return {}, None
        except (OSError, ValueError):
            holder = {}
        return holder, age

    def _stale(self, holder, age):
        """Why the lock in place is stale, or None if its holder may be alive."""
        if age is None:
            return "gone"
        if holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid():
            old = _HELD.get(os.path.realpath(self.out))  # runs in one process are sequential
            if old is not None:  # (in-process tests): an earlier one did not release it
                old.release()
            return "left by an earlier run in this process"
        if self._flock_held():
            return None
        if not holder:  # being written right now, or garbage
            return f"unreadable and {age:.0f}s old" if age > 10 else None
        job = os.environ.get("SLURM_JOB_ID", "")
        if job and holder.get("slurm_job") == job and \
                holder.get("slurm_restart") != os.environ.get("SLURM_RESTART_COUNT", "0"):
            return f"an earlier run of Slurm job {job}, which has been requeued"
        if holder.get("host") == socket.gethostname():
            pid = holder.get("pid")
            if holder.get("boot_id") and holder.get("boot_id") != _boot_id():
                return "the host has rebooted since"
            if not isinstance(pid, int):
                return "no pid recorded"
            start = _pid_start(pid)
            if start is None:
                return f"pid {pid} is not running"
            if start != -1 and holder.get("pid_start") not in (None, -1, start):
                return f"pid {pid} is another process now"
            return None
        if age > STALE_AFTER:
            return f"not refreshed for {age:.0f}s > {STALE_AFTER:.0f}s"
        return None

    def _flock_held(self):
        """True if another process holds an flock on the lock file (where flock works)."""
        try:
            import fcntl
            fd = os.open(self.path, os.O_RDONLY)
        except (ImportError, OSError):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def _take_over(self, holder, age):
        mutex = self.path + ".takeover"
        try:
            os.mkdir(mutex)
        except FileExistsError:
            try:
                if time.time() - os.stat(mutex).st_mtime > 60:
                    os.rmdir(mutex)  # left by a newcomer that died while taking over
            except OSError:
                pass
            time.sleep(0.2)
            return
        except OSError as exc:
            raise OutputError(f"{mutex}: cannot take over a stale run lock "
                              f"({exc.strerror or exc})")
        try:
            again, _ = self._read()
            if again == holder:  # nobody took it meanwhile
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
        finally:
            os.rmdir(mutex)

    # -- holding and releasing ------------------------------------------------------------
    def _heartbeat(self):
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self):
        self._stop.set()
        _HELD.pop(os.path.realpath(self.out), None)
        if self.fd is None:
            return
        holder, _ = self._read()
        if holder == self.info:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = None


def lock(out):
    """Take the run lock of `out` (rank 0); returns (RunLock, note about a stale lock)."""
    lk = RunLock(out)
    return lk, lk.acquire()


def release(out):
    """Release the lock this process holds on `out` (if any)."""
    lk = _HELD.get(os.path.realpath(out))
    if lk is not None:
        lk.release()


@atexit.register
def _release_all():
    for lk in list(_HELD.values()):
        lk.release()


def earlier_results(out):
    """What of an earlier run's results `out` holds: checkpoints, final.h5, summary.json."""
    from .checkpoint import candidates
    found = ["checkpoints"] if candidates(os.path.join(out, "checkpoints")) else []
    return found + [n for n in ("final.h5", "summary.json")
                    if os.path.lexists(os.path.join(out, n))]


def set_aside(out):
    """Move the earlier run's results into OUT/previous-<time>/ (renames only); returns that
    directory, or None if there was nothing to move."""
    present = [n for n in RESULTS if os.path.lexists(os.path.join(out, n))]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = os.path.join(out, f"previous-{stamp}")
    k = 1
    while os.path.lexists(dest):
        k += 1
        dest = os.path.join(out, f"previous-{stamp}-{k}")
    tmp = os.path.join(out, f".{os.path.basename(dest)}.tmp{os.getpid()}")
    try:
        os.mkdir(tmp)
        for name in present:
            os.rename(os.path.join(out, name), os.path.join(tmp, name))
        os.rename(tmp, dest)
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"{out}: cannot move the earlier run's results aside into {dest} "
                          f"({exc.strerror or exc}); they are in {tmp} or still in place")
    return dest
