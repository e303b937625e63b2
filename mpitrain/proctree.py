"""The processes of an MPI job seen from outside: what the fault tests and `mpitrain bench
faults` use to find, signal and count ranks. Hydra puts its proxy and every rank in a session
of their own, so a process-group kill does not reach them: these follow the parent links in
/proc. Linux only; no MPI, no side effects beyond the signals asked for."""
import os
import signal


def stat(pid):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            rest = fh.read().rsplit(") ", 1)[1].split()
        return rest[0], int(rest[1])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root):
    """Live (non-zombie) processes below `root`."""
    children = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            st = stat(pid)
            if st and st[0] != "Z":
                children.setdefault(st[1], []).append(int(pid))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(root, sig=signal.SIGKILL):
    """Send `sig` to `root` and every process below it."""
    for pid in [root] + descendants(root):
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def alive(pids):
    """The pids of `pids` that are still running (zombies count as gone)."""
    return [p for p in pids if stat(p) and stat(p)[0] != "Z"]


def rank_pids(root):
    """{rank: pid} of the MPI processes below the mpiexec `root` (PMI_RANK from /proc)."""
    found = {}
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                env = dict(kv.split(b"=", 1) for kv in fh.read().split(b"\0") if b"=" in kv)
        except (OSError, ValueError):
            continue
        if b"PMI_RANK" in env:
            found[int(env[b"PMI_RANK"])] = pid
    return found
