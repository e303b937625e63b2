"""A network that costs something, on one machine: two "nodes" in their own network
namespaces, MPI traffic over MPICH's OFI/TCP path through a link with a set one-way latency
and bandwidth. Used by `mpitrain bench scaling` and by the tests; needs root (NET_ADMIN),
iproute2 and /dev/net/tun, and says so clearly where they are missing.

Topology (namespaces mtn<T>-0 and mtn<T>-1, T a tag so several links may coexist):

    control:  veth pair "mtctl"  10.231.T.1 <-> 10.231.T.2   unshaped (Hydra's own traffic)
    data:     TUN "mtdata"       10.232.T.1 <-> 10.232.T.2   every MPI byte
              a forwarder process (this module, `forward`) reads each packet from one TUN
              device and writes it to the other after `latency` seconds (the kernel here
              has no netem); bandwidth is a `tbf` qdisc on each mtdata (`rate`, a burst of
              two packets), so only this link is slowed, nothing else on the machine.
              The burst is the least tbf allows (a packet must fit, two so that one may
              queue): a real link sends at its line rate, while the 128 KiB burst used
              before let a message of up to 128 KiB after a pause through unshaped: the
              call probe's 128 KiB Allreduce at 200 Mbit/s took 9.0 ms, the same calls in
              a run 12 ms (where earlier large transfers had, we think, set TCP's pacing to
              the real rate); 11–15 ms in the probe with the two-packet burst.

Ranks are started by Hydra inside the namespaces: `mpiexec` itself runs in node 0's
namespace with `-iface mtctl`, and its launcher (`-launcher ssh -launcher-exec`) is this
module's `nsexec` entry, which enters the namespace of the host address it is given. The
ranks get MPIR_CVAR_CH4_NETMOD=ofi, MPIR_CVAR_NOLOCAL=1, FI_PROVIDER=tcp and
FI_TCP_IFACE=mtdata, so MPICH uses neither shared memory nor UCX between them.

What a call costs over the link (`calls`; measured 2026-12-01, MPICH 5.0.2's libfabric tcp):
a send of more than about 128 bytes (the provider's inject size) completes only when the
receiver acknowledges it, since MPICH asks for delivery completion while MPI RMA is enabled,
so an exchange round costs two one-way latencies (one with MPIR_CVAR_CH4_OFI_ENABLE_RMA=0).
Checked and ruled out as the cause of slow calls here: Nagle and delayed ACKs (libfabric sets
TCP_NODELAY; FI_TCP_NODELAY=0 turns Nagle on and makes a 256 B ping-pong 50 ms), slow start
after idle (a 1 MiB Sendrecv after 0, 0.05, 0.3 and 1 s of idle: 11.7-11.9 ms, BBR, initial
window 10 packets of 16 kB), an MPI rendezvous round trip (1 MiB Sendrecv without RMA:
α + nβ) and the forwarder's cost per packet (about 0.1 ms on α; a 2 MiB Bcast at 1 Gbit/s
takes α + nβ).

    python -m mpitrain.netem up --latency 0.002 --rate 1gbit [--tag 0]   (prints the link)
    python -m mpitrain.netem mpiexec [--tag 0] -n 2 CMD ...              (runs CMD over it)
    python -m mpitrain.netem down [--tag 0]
    python -m mpitrain.netem calls [--tag 0]                             (seconds per call)
    python -m mpitrain.netem check                                      (can this machine?)
"""
import argparse
import collections
import ctypes
import fcntl
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
STATE_DIR = "/run/mpitrain-netem"
MPI_ENV = {"MPIR_CVAR_CH4_NETMOD": "ofi", "MPIR_CVAR_NOLOCAL": "1", "FI_PROVIDER": "tcp",
           "FI_TCP_IFACE": "mtdata"}


class Unavailable(RuntimeError):
    """This machine cannot emulate the network (the message says why)."""


def ns_name(tag, node):
    return f"mtn{tag}-{node}"


def ctl_addr(tag, node):
    return f"10.231.{tag}.{node + 1}"


def data_addr(tag, node):
    return f"10.232.{tag}.{node + 1}"


def check():
    """Raise Unavailable naming the missing capability; return None when all is there."""
    if os.geteuid() != 0:
        raise Unavailable("needs root (network namespaces, TUN devices, tc)")
    for tool in ("ip", "tc", "nsenter"):
        if shutil.which(tool) is None:
            raise Unavailable(f"`{tool}` not found (Debian: iproute2 / util-linux)")
    if not os.path.exists("/dev/net/tun"):
        raise Unavailable("/dev/net/tun is missing (no TUN support)")
    probe = "mtnprobe"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        raise Unavailable(f"cannot create a network namespace: {r.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


def _sh(*cmd, ns=None):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    r = subprocess.run(full, capture_output=True, text=True)
    if r.returncode != 0:
        raise Unavailable(f"`{' '.join(full)}` failed: {r.stderr.strip()}")
    return r.stdout


# -- the forwarder: TUN <-> TUN with a fixed one-way delay ------------------------------------
_libc = None


def _setns(path):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def forward(tag, latency):
    """Create mtdata in both namespaces and move packets between them, each held `latency`
    seconds (runs until killed; the devices vanish with this process)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    fds = []
    for node in (0, 1):
        _setns(f"/run/netns/{ns_name(tag, node)}")
        fds.append(_open_tun("mtdata"))
    _libc.setns(home, CLONE_NEWNET)
    os.close(home)
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    def pipe(src, dst):
        queue = collections.deque()
        ready = threading.Condition()

        def writer():
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, pkt = queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    os.write(dst, pkt)
                except OSError:
                    pass  # the peer device is not up yet, or its queue is full: a lost packet

        threading.Thread(target=writer, daemon=True).start()
        while True:
            pkt = os.read(src, 65536)
            with ready:
                queue.append((time.monotonic() + latency, pkt))
                ready.notify()

    t = threading.Thread(target=pipe, args=(fds[1], fds[0]), daemon=True)
    t.start()
    pipe(fds[0], fds[1])


# -- set up, tear down ---------------------------------------------------------------------
def _state_path(tag):
    return os.path.join(STATE_DIR, f"link{tag}.json")


def _launcher_path(tag):
    return os.path.join(STATE_DIR, f"nsexec{tag}")


def up(latency=0.0, rate="", tag=0, mtu=16000):
    """Build the two namespaces, the control veth and the delayed/shaped data link; returns
    the link's description (also written to /run/mpitrain-netem/link<tag>.json)."""
    check()
    down(tag)
    ns = [ns_name(tag, 0), ns_name(tag, 1)]
    try:
        for n in ns:
            _sh("ip", "netns", "add", n)
            _sh("ip", "link", "set", "lo", "up", ns=n)
        _sh("ip", "link", "add", f"mtc{tag}a", "type", "veth", "peer", "name", f"mtc{tag}b")
        for node, end in ((0, "a"), (1, "b")):
            _sh("ip", "link", "set", f"mtc{tag}{end}", "netns", ns[node])
            _sh("ip", "link", "set", f"mtc{tag}{end}", "name", "mtctl", ns=ns[node])
            _sh("ip", "addr", "add", f"{ctl_addr(tag, node)}/24", "dev", "mtctl", ns=ns[node])
            _sh("ip", "link", "set", "mtctl", "up", ns=ns[node])
        fwd = subprocess.Popen([sys.executable, "-m", "mpitrain.netem", "_forward",
                                "--tag", str(tag), "--latency", repr(float(latency))],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, text=True)
        line = fwd.stdout.readline().strip()
        if line != "ready":
            raise Unavailable(f"the delay forwarder did not start: {fwd.stderr.read().strip()}")
        for node in (0, 1):
            peer = data_addr(tag, 1 - node)
            _sh("ip", "addr", "add", data_addr(tag, node), "peer", peer, "dev", "mtdata",
                ns=ns[node])
            _sh("ip", "link", "set", "mtdata", "mtu", str(mtu), "up", ns=ns[node])
            if rate:
                _sh("tc", "qdisc", "add", "dev", "mtdata", "root", "tbf", "rate", rate,
                    "burst", str(2 * mtu), "latency", "100ms", ns=ns[node])
        desc = {"tag": tag, "namespaces": ns, "latency": float(latency), "rate": rate,
                "mtu": mtu, "forwarder_pid": fwd.pid,
                "ctl": [ctl_addr(tag, 0), ctl_addr(tag, 1)],
                "data": [data_addr(tag, 0), data_addr(tag, 1)]}
        os.makedirs(STATE_DIR, exist_ok=True)
        with open(_launcher_path(tag), "w") as fh:  # Hydra wants one executable path
            fh.write(f"#!/bin/sh\nexec {sys.executable} -m mpitrain.netem _nsexec --tag {tag} "
                     '"$@"\n')
        os.chmod(_launcher_path(tag), 0o755)
        with open(_state_path(tag), "w") as fh:
            json.dump(desc, fh)
        return desc
    except BaseException:
        down(tag)
        raise


def down(tag=0):
    """Remove link `tag` (the forwarder, both namespaces); quiet when it does not exist."""
    try:
        with open(_state_path(tag)) as fh:
            desc = json.load(fh)
        os.killpg(desc["forwarder_pid"], signal.SIGKILL)
    except (OSError, ValueError, KeyError):
        pass
    for node in (0, 1):
        subprocess.run(["ip", "netns", "del", ns_name(tag, node)], capture_output=True)
    for path in (_state_path(tag), _launcher_path(tag)):
        try:
            os.unlink(path)
        except OSError:
            pass
    for _ in range(50):  # namespace deletion completes shortly after `ip netns del`
        if not any(os.path.exists(f"/run/netns/{ns_name(tag, n)}") for n in (0, 1)):
            break
        time.sleep(0.05)


def mpiexec_argv(tag, nranks, cmd, mpiexec=None, env=None):
    """The command line that runs `cmd` on `nranks` ranks spread over the link's two nodes
    (ranks alternate nodes: 0 on node 0, 1 on node 1, ...), with MPI_ENV and `env` (a dict)
    set on every rank."""
    mpiexec = mpiexec or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    hosts = ",".join(f"{ctl_addr(tag, n)}:{(nranks + 1 - n) // 2}" for n in (0, 1))
    extra, env = env or {}, []
    for k, v in {**MPI_ENV, **extra}.items():
        env += ["-genv", k, v]
    return (["nsenter", f"--net=/run/netns/{ns_name(tag, 0)}", mpiexec,
             "-launcher", "ssh", "-launcher-exec", _launcher_path(tag),
             "-iface", "mtctl", "-hosts", hosts, "-n", str(nranks)] + env + list(cmd))


def nsexec(tag, argv):
    """Hydra's launcher: argv = [options..., HOST, command...]; run the command in the
    namespace whose control address is HOST (in the shell, as ssh would)."""
    hosts = {ctl_addr(tag, n): ns_name(tag, n) for n in (0, 1)}
    i = next(i for i, a in enumerate(argv) if a in hosts)
    os.execvp("nsenter", ["nsenter", f"--net=/run/netns/{hosts[argv[i]]}", "sh", "-c",
                          " ".join(argv[i + 1:])])


def probe(reps_small=200, reps_large=10, large=1 << 20):
    """Rank side of `measure` (2 ranks): medians of back-to-back ping-pongs and Allreduces of
    8 B and `large` bytes, no barrier between timed calls. Prints one JSON line on rank 0."""
    import numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    other = 1 - comm.rank
    out = {"processor": MPI.Get_processor_name(), "size": comm.size}
    for nbytes, reps in ((8, reps_small), (large, reps_large), (2 * large, reps_large)):
        buf = np.zeros(max(1, nbytes // 8))
        res = np.empty_like(buf)
        pp, ar = [], []
        for i in range(reps + 3):
            t0 = time.perf_counter()
            if comm.rank == 0:
                comm.Send(buf, dest=other)
                comm.Recv(res, source=other)
            else:
                comm.Recv(res, source=other)
                comm.Send(buf, dest=other)
            if i >= 3:
                pp.append((time.perf_counter() - t0) / 2)
        t0 = time.perf_counter()
        for i in range(reps + 3):
            comm.Allreduce(buf, res)
            t1 = time.perf_counter()
            if i >= 3:
                ar.append(t1 - t0)
            t0 = t1
        out[f"oneway_{nbytes}"] = float(np.median(pp))
        out[f"allreduce_{nbytes}"] = float(np.median(ar))
    if comm.rank == 0:
        print(json.dumps(out))


def measure(tag=0, large=1 << 20):
    """α (one-way time of 8 B), β (seconds per byte: the slope between `large` and 2·`large`
    bytes one way, so tbf's first unshaped burst cancels), and the Allreduce times, measured
    over link `tag` with 2 ranks (one per node)."""
    argv = mpiexec_argv(tag, 2, [sys.executable, "-m", "mpitrain.netem", "_probe",
                                 "--large", str(large)])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise Unavailable(f"the probe failed over link {tag}: {r.stderr.strip()[-500:]}")
    m = json.loads(r.stdout.strip().splitlines()[-1])
    m["alpha"] = m["oneway_8"]
    m["beta"] = (m[f"oneway_{2 * large}"] - m[f"oneway_{large}"]) / large
    return m


CALL_KINDS = ("allreduce", "allgatherv", "bcast", "sendrecv")
CALL_SIZES = tuple(8 << k for k in range(19))     # 8 B .. 2 MiB, powers of two


def probe_calls(sizes=CALL_SIZES, budget=0.2, most=30):
    """Rank side of `measure_calls` (2 ranks): the mean seconds per call of back-to-back
    calls of each kind in CALL_KINDS and each size n in `sizes`, n counted as World counts
    it (the buffer; for Allgatherv this rank's share, so 2n bytes are gathered). Bcast
    alternates its root, so each call waits for the previous one as in an algorithm's step
    (back-to-back Bcasts from one root would overlap). Two warm-up calls, then as many as
    fit in `budget` seconds (3 to `most`, rank 0's count). Prints one JSON line on rank 0:
    {kind: [[n, seconds], ...]}."""
    import numpy as np
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    other = 1 - comm.rank
    out = {k: [] for k in CALL_KINDS}
    warm = np.zeros(1 << 14)
    for _ in range(3):        # the first messages open the connection: not timed
        comm.Sendrecv(warm, dest=other, recvbuf=np.empty_like(warm), source=other)
        comm.Allreduce(MPI.IN_PLACE, warm)
    for n in sizes:
        buf = np.zeros(max(1, n // 8))
        res = np.empty_like(buf)
        full = np.empty(2 * buf.size)
        spec = [full, ([buf.size, buf.size], [0, buf.size])]
        for kind in CALL_KINDS:
            def call(i):
                if kind == "allreduce":
                    comm.Allreduce(buf, res)
                elif kind == "allgatherv":
                    comm.Allgatherv(buf, spec)
                elif kind == "bcast":
                    comm.Bcast(buf, root=i % 2)
                else:
                    comm.Sendrecv(buf, dest=other, recvbuf=res, source=other)
            comm.Barrier()
            t0 = time.perf_counter()
            call(0)
            call(1)
            warm = (time.perf_counter() - t0) / 2
            reps = comm.bcast(int(min(most, max(3, budget / max(warm, 1e-6))) // 2 * 2))
            comm.Barrier()
            t0 = time.perf_counter()
            for i in range(reps):
                call(i)
            out[kind].append([n, (time.perf_counter() - t0) / reps])
    if comm.rank == 0:
        print(json.dumps(out))


def measure_calls(tag=0, sizes=CALL_SIZES, env=None):
    """The per-call table of `probe_calls` over link `tag` (2 ranks, one per node; `env`:
    more variables for the ranks, e.g. an MPICH CVAR)."""
    argv = mpiexec_argv(tag, 2, [sys.executable, "-m", "mpitrain.netem", "_probe_calls",
                                 "--sizes", ",".join(map(str, sizes))], env=env)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise Unavailable(f"the call probe failed over link {tag}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def call_seconds(table, nbytes):
    """Seconds of one call of `nbytes` on a link, from a probed table [[n, seconds], ...]
    (ascending n): linear in n between the two probed sizes around it, the smallest size's
    time below it, and beyond the largest the line through the last two points."""
    if nbytes <= table[0][0]:
        return table[0][1]
    for (n0, t0), (n1, t1) in zip(table, table[1:]):
        if nbytes <= n1:
            return t0 + (t1 - t0) * (nbytes - n0) / (n1 - n0)
    (n0, t0), (n1, t1) = table[-2], table[-1]
    return t1 + (t1 - t0) * (nbytes - n1) / (n1 - n0)


def _rate_bps(rate):
    """'100mbit' → bytes per second (tc's units: bit, kbit, mbit, gbit; bps = bytes/s)."""
    units = {"gbit": 1e9 / 8, "mbit": 1e6 / 8, "kbit": 1e3 / 8, "bit": 1 / 8, "gbps": 1e9,
             "mbps": 1e6, "kbps": 1e3, "bps": 1.0}
    for u, f in units.items():
        if rate.endswith(u):
            return float(rate[:-len(u)]) * f
    return float(rate) / 8


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["_nsexec", "--tag"]:  # Hydra's options come first: no argparse here
        nsexec(int(argv[2]), argv[3:])
    ap = argparse.ArgumentParser(prog="python -m mpitrain.netem", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("up", help="build a link (namespaces, delay forwarder, tbf)")
    p.add_argument("--latency", type=float, default=0.0, help="one-way delay, seconds")
    p.add_argument("--rate", default="", help="bandwidth as tc says it, e.g. 1gbit ('' = none)")
    p.add_argument("--tag", type=int, default=0, help="link number (0-254)")
    p = sub.add_parser("down", help="remove a link")
    p.add_argument("--tag", type=int, default=0)
    p = sub.add_parser("mpiexec", help="run a command on N ranks over a link that is up")
    p.add_argument("--tag", type=int, default=0)
    p.add_argument("-n", type=int, default=2)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    sub.add_parser("check", help="say whether this machine can emulate a network")
    p = sub.add_parser("measure", help="measure α and β over a link that is up (2 ranks)")
    p.add_argument("--tag", type=int, default=0)
    p = sub.add_parser("calls", help="seconds per call of each collective kind and size over "
                       "a link that is up (2 ranks; JSON {kind: [[bytes, seconds], ...]})")
    p.add_argument("--tag", type=int, default=0)
    p = sub.add_parser("_probe")
    p.add_argument("--large", type=int, default=1 << 20)
    p = sub.add_parser("_probe_calls")
    p.add_argument("--sizes", default=",".join(map(str, CALL_SIZES)))
    p = sub.add_parser("_forward")
    p.add_argument("--tag", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    a = ap.parse_args(argv)
    try:
        if a.verb == "check":
            check()
            print("ok: network namespaces, TUN and tc are available")
        elif a.verb == "up":
            print(json.dumps(up(a.latency, a.rate, a.tag)))
        elif a.verb == "down":
            down(a.tag)
        elif a.verb == "mpiexec":
            return subprocess.call(mpiexec_argv(a.tag, a.n, a.cmd))
        elif a.verb == "measure":
            print(json.dumps(measure(a.tag)))
        elif a.verb == "calls":
            print(json.dumps(measure_calls(a.tag)))
        elif a.verb == "_probe":
            probe(large=a.large)
        elif a.verb == "_probe_calls":
            probe_calls([int(x) for x in a.sizes.split(",")])
        elif a.verb == "_forward":
            forward(a.tag, a.latency)
    except Unavailable as exc:
        sys.stderr.write(f"mpitrain netem: unavailable: {exc}\n")
        return 69
    return 0


if __name__ == "__main__":
    sys.exit(main())
