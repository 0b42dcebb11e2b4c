#!/usr/bin/env python3
"""Fault campaigns against a real craft cluster (issue 8): separate kv processes, real sockets,
real disks, real faults; a recorded history checked for linearizability and lost writes.

    # the short campaign of `make test` (tests/faults/test_campaign.py) is this, bounded:
    .venv/bin/python tests/faults/campaign.py --duration 60 --nodes 3 --seed 1
    # a long one, writing a report (report.md, report.json, history.jsonl, latency.png, logs):
    .venv/bin/python tests/faults/campaign.py --duration 1800 --nodes 5 --clients 8 \
        --seed 42 --out /tmp/campaign-42

Exit status: 0 every check passed, 1 a check failed (a violation, a lost write, diverging
replicas, a node that accepted a corrupted log), 2 inconclusive (the checker ran out of time on
some key), 3 the campaign itself could not run.

The system under test is examples/python/kv.py (one process per server, fsync on, clients on a
Unix socket each). The network: when this process may create network namespaces (root, `ip
netns`), every server runs in a namespace of its own ("cfc<pid>n<id>"), with an address
10.213.0.<id> on a veth into a bridge in a hub namespace ("cfc<pid>h"); iptables inside each
server's namespace cuts any pair, one way or both, and drops packets at random
(`-m statistic`). Otherwise every server listens on 127.0.0.1 and partitions and loss go through
craft's transport hook (Node.set_faults, the kv "faults" command) instead; the report says which.
Delay and reordering always go through the hook (there is no tc netem). Only 127.0.0.0/8 and the
namespaces made here are ever touched; every process and namespace made here is removed at the
end, whatever happens.

docs/reliability.md describes what is checked and what the results were.
"""

import argparse
import dataclasses
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KV = os.path.join(ROOT, "examples", "python", "kv.py")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # tests/free_ports.py
import linearizability  # noqa: E402
from free_ports import free_range  # noqa: E402  (below the ephemeral range: see there)

NIL = "(nil)"
SUBNET = "10.213.0"
RAFT_PORT = 7000
NS_PREFIX = "cfc"

KINDS = ("kill", "pause", "partition-leader", "partition-split", "partition-oneway",
         "partition-ring", "loss", "delay", "membership", "transfer", "disk")
# Not in the default rotation (they take the majority away, so they test safety, not
# availability): --kinds combo,kill-all,...
EXTRA_KINDS = ("combo", "kill-all")


def log(msg: str) -> None:
    print(f"[campaign {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(args: List[str], check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


# ----------------------------------------------------------------------------------------------
# The network: namespaces + iptables, or the transport hook
# ----------------------------------------------------------------------------------------------


class Network:
    """Cuts (src -> dst: what src sends to dst is dropped) and random loss. The transport hook
    (per-pair drop/delay/block, pushed to the kv servers) is kept by the Cluster."""

    mode = "hook"

    def address(self, sid: int) -> str:
        raise NotImplementedError

    def prefix(self, sid: int) -> List[str]:
        return []

    def add_node(self, sid: int) -> None:
        pass

    def apply(self, cuts: set, loss: float, ids: List[int]) -> None:
        pass

    def teardown(self) -> None:
        pass


class HookNetwork(Network):
    """Every server on 127.0.0.1; faults only through Node.set_faults."""

    mode = "hook"

    def __init__(self) -> None:
        self.base = free_port_base()

    def address(self, sid: int) -> str:
        return f"127.0.0.1:{self.base + sid}"


def free_port_base(span: int = 64) -> int:
    """A base whose next span-1 ports are free, below the ephemeral range (tests/free_ports.py)."""
    return free_range(span - 1)


class NetnsNetwork(Network):
    """One network namespace per server, a bridge in a hub namespace, iptables per server."""

    mode = "netns"

    def __init__(self) -> None:
        self.tag = f"{NS_PREFIX}{os.getpid()}"
        self.hub = f"{self.tag}h"
        self.nodes: Dict[int, str] = {}
        self.lock = threading.Lock()
        reap_stale_namespaces()
        sh(["ip", "netns", "add", self.hub])
        try:
            self.ns(self.hub, "ip", "link", "set", "lo", "up")
            self.ns(self.hub, "ip", "link", "add", "br0", "type", "bridge")
            self.ns(self.hub, "ip", "link", "set", "br0", "up")
        except Exception:
            self.teardown()
            raise

    @staticmethod
    def ns(name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh(["ip", "netns", "exec", name, *args], check=check)

    def address(self, sid: int) -> str:
        return f"{SUBNET}.{sid}:{RAFT_PORT}"

    def prefix(self, sid: int) -> List[str]:
        return ["ip", "netns", "exec", self.nodes[sid]]

    def add_node(self, sid: int) -> None:
        with self.lock:
            if sid in self.nodes:
                return
            name = f"{self.tag}n{sid}"
            veth = f"{self.tag}v{sid}"
            sh(["ip", "netns", "add", name])
            self.nodes[sid] = name
            sh(["ip", "link", "add", veth, "netns", self.hub, "type", "veth", "peer", "name",
                "eth0", "netns", name])
            self.ns(self.hub, "ip", "link", "set", veth, "master", "br0")
            self.ns(self.hub, "ip", "link", "set", veth, "up")
            self.ns(name, "ip", "link", "set", "lo", "up")
            self.ns(name, "ip", "addr", "add", f"{SUBNET}.{sid}/24", "dev", "eth0")
            self.ns(name, "ip", "link", "set", "eth0", "up")

    def apply(self, cuts: set, loss: float, ids: List[int]) -> None:
        """Rewrites every server namespace's OUTPUT chain: a DROP per cut, then random loss."""
        for sid in ids:
            name = self.nodes.get(sid)
            if name is None:
                continue
            rules = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
                     ":OUTPUT ACCEPT [0:0]"]
            for src, dst in sorted(cuts):
                if src == sid:
                    rules.append(f"-A OUTPUT -d {SUBNET}.{dst}/32 -j DROP")
            if loss > 0:
                rules.append(f"-A OUTPUT -d {SUBNET}.0/24 -m statistic --mode random "
                             f"--probability {loss:.3f} -j DROP")
            rules.append("COMMIT")
            r = subprocess.run(["ip", "netns", "exec", name, "iptables-restore"],
                               input="\n".join(rules) + "\n", capture_output=True, text=True,
                               timeout=20)
            if r.returncode != 0:
                raise RuntimeError(f"iptables-restore in {name}: {r.stderr.strip()}")

    def teardown(self) -> None:
        for name in list(self.nodes.values()) + [self.hub]:
            sh(["ip", "netns", "del", name], check=False)
        self.nodes.clear()


def reap_stale_namespaces() -> None:
    """Removes namespaces left by campaign runners that died without cleaning up (only ours:
    named cfc<pid>..., whose pid is gone)."""
    r = sh(["ip", "netns", "list"], check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(NS_PREFIX + r"(\d+)(h|n\d+)", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            sh(["ip", "netns", "del", name], check=False)


def netns_permitted() -> Tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not root: network namespaces need CAP_SYS_ADMIN"
    if shutil.which("ip") is None or shutil.which("iptables-restore") is None:
        return False, "ip or iptables is not installed"
    name = f"{NS_PREFIX}{os.getpid()}probe"
    r = sh(["ip", "netns", "add", name], check=False)
    if r.returncode != 0:
        return False, f"ip netns add failed: {r.stderr.strip()}"
    try:
        r = sh(["ip", "netns", "exec", name, "iptables", "-A", "OUTPUT", "-m", "statistic",
                "--mode", "random", "--probability", "0.5", "-d", "10.213.0.1", "-j", "DROP"],
               check=False)
        if r.returncode != 0:
            return False, f"iptables in a namespace failed: {r.stderr.strip()}"
    finally:
        sh(["ip", "netns", "del", name], check=False)
    return True, "namespaces and iptables work"


def written_size(path: str) -> int:
    """The file's size without its trailing zero bytes (a preallocated WAL segment's tail)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            chunk = fh.read(end - start).rstrip(b"\0")
            if chunk:
                return start + len(chunk)
            end = start
    return 0


# ----------------------------------------------------------------------------------------------
# The cluster of kv processes
# ----------------------------------------------------------------------------------------------


class RequestError(Exception):
    def __init__(self, msg: str, sent: bool):
        super().__init__(msg)
        self.sent = sent


def request(path: str, line: str, timeout: float) -> str:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    sent = False
    try:
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        sent = True
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                raise RequestError("connection closed", sent)
            buf += chunk
        return buf.decode().strip()
    except RequestError:
        raise
    except OSError as e:
        raise RequestError(f"{type(e).__name__}: {e}", sent) from None
    finally:
        s.close()


class Cluster:
    def __init__(self, root: str, net: Network, n: int, snapshot_entries: int,
                 request_timeout: float):
        self.root = root
        self.net = net
        self.request_timeout = request_timeout
        self.snapshot_entries = snapshot_entries
        self.members: List[int] = list(range(1, n + 1))  # the configuration, as we drove it
        self.next_id = n + 1
        self.procs: Dict[int, subprocess.Popen] = {}
        self.joined: Dict[int, bool] = {}
        self.paused: set = set()
        self.cuts: set = set()  # (src, dst)
        self.loss = 0.0
        self.delay: Tuple[int, int, float] = (0, 0, 0.0)
        self.hook: Dict[Tuple[int, int], Tuple[float, int, int, bool]] = {}
        self.lock = threading.RLock()
        self.initial = {i: net.address(i) for i in self.members}
        for i in self.members:
            net.add_node(i)

    def sock(self, sid: int) -> str:
        return os.path.join(self.root, f"kv{sid}.sock")

    def data_dir(self, sid: int) -> str:
        return os.path.join(self.root, f"kv{sid}")

    def log_path(self, sid: int) -> str:
        return os.path.join(self.root, f"kv{sid}.log")

    def start(self, sid: int, join: bool = False, wait: float = 20.0) -> bool:
        """Starts server sid; True once it answers on its socket, False if it exited."""
        with self.lock:
            assert sid not in self.procs, sid
            self.net.add_node(sid)
            join = self.joined.get(sid, join)
            self.joined[sid] = join
            peers = ",".join(f"{i}={a}" for i, a in sorted(self.initial.items()))
            cmd = [*self.net.prefix(sid), sys.executable, KV, "serve", str(sid),
                   "--data", self.root, "--address", self.net.address(sid),
                   "--client-unix", self.sock(sid), "--timeout", str(self.request_timeout),
                   "--wait-leader", "0", "--test-hooks",
                   "--snapshot-entries", str(self.snapshot_entries)]
            cmd += ["--join"] if join else ["--peers", peers]
            out = open(self.log_path(sid), "ab")
            out.write(f"==== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
            out.flush()
            try:
                if os.path.exists(self.sock(sid)):
                    os.unlink(self.sock(sid))
                self.procs[sid] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL,
                                                   start_new_session=True)
            finally:
                out.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            p = self.procs.get(sid)
            if p is None or p.poll() is not None:
                return False
            try:
                request(self.sock(sid), "status", 2)
                self.push_hook(sid)
                return True
            except RequestError:
                time.sleep(0.05)
        return False

    def exited(self, sid: int) -> Optional[int]:
        p = self.procs.get(sid)
        return None if p is None else p.poll()

    def reap(self, sid: int) -> Optional[int]:
        """Forgets a process that exited by itself; returns its exit code."""
        with self.lock:
            p = self.procs.get(sid)
            if p is None or p.poll() is None:
                return None
            del self.procs[sid]
            self.paused.discard(sid)
            return p.returncode

    def kill(self, sid: int) -> None:
        with self.lock:
            p = self.procs.pop(sid, None)
            self.paused.discard(sid)
        if p is not None:
            try:
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()

    def pause(self, sid: int) -> None:
        with self.lock:
            p = self.procs.get(sid)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGSTOP)
                self.paused.add(sid)

    def resume(self, sid: int) -> None:
        with self.lock:
            p = self.procs.get(sid)
            self.paused.discard(sid)
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGCONT)

    def running(self) -> List[int]:
        with self.lock:
            return [i for i, p in sorted(self.procs.items()) if p.poll() is None]

    def ask(self, sid: int, line: str, timeout: Optional[float] = None) -> str:
        return request(self.sock(sid), line, timeout or self.request_timeout + 2)

    def status(self, sid: int, timeout: float = 2.0) -> Optional[Dict[str, str]]:
        if sid in self.paused or sid not in self.procs:
            return None
        try:
            line = self.ask(sid, "status", timeout)
        except RequestError:
            return None
        return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)

    def leader(self) -> Optional[int]:
        best: Tuple[int, int] = (-1, 0)
        for sid in self.running():
            st = self.status(sid)
            if st and st.get("role") == "leader" and int(st["term"]) > best[0]:
                best = (int(st["term"]), sid)
        return best[1] or None

    def wait_leader(self, timeout: float) -> Optional[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lead = self.leader()
            if lead is not None:
                return lead
            time.sleep(0.1)
        return None

    def admin(self, line: str, timeout: float = 20.0) -> Tuple[bool, str]:
        """Sends an admin command to the leader, retrying until it succeeds or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no leader"
        while time.monotonic() < deadline:
            lead = self.leader()
            if lead is None:
                time.sleep(0.2)
                continue
            try:
                answer = self.ask(lead, line)
            except RequestError as e:
                last = str(e)
                time.sleep(0.2)
                continue
            if not answer.startswith("ERR"):
                return True, answer
            last = answer
            time.sleep(0.3)
        return False, last

    # -- network faults ----------------------------------------------------------------------

    def set_network(self, cuts: set, loss: float) -> None:
        """Cuts (src, dst) and random loss: iptables in netns mode, else the transport hook."""
        with self.lock:
            self.cuts = set(cuts)
            self.loss = loss
            ids = sorted(set(self.members) | set(self.procs))
        if self.net.mode == "netns":
            self.net.apply(self.cuts, loss, ids)
        self.sync_hook()

    def set_delay(self, lo: int, hi: int, drop: float = 0.0) -> None:
        """Delay (and reordering) of every message, always through the transport hook."""
        with self.lock:
            self.delay = (lo, hi, drop)
        self.sync_hook()

    def desired_hook(self) -> Dict[Tuple[int, int], Tuple[float, int, int, bool]]:
        ids = sorted(set(self.members) | set(self.procs))
        lo, hi, drop = self.delay
        out = {}
        for a in ids:
            for b in ids:
                if a == b:
                    continue
                d, block = drop, False
                if self.net.mode != "netns":
                    d, block = max(drop, self.loss), (a, b) in self.cuts
                v = (float(d), lo, hi, block)
                if v != (0.0, 0, 0, False):
                    out[(a, b)] = v
        return out

    def sync_hook(self) -> None:
        with self.lock:
            new = self.desired_hook()
            old, self.hook = self.hook, new
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        for src, dst in changed:
            drop, lo, hi, block = new.get((src, dst), (0.0, 0, 0, False))
            self.send_fault(src, dst, drop, lo, hi, block)

    def send_fault(self, src: int, dst: int, drop: float, lo: int, hi: int,
                   block: bool) -> None:
        if src not in self.procs or src in self.paused:
            return
        try:
            self.ask(src, f"faults {dst} {drop} {lo} {hi} {int(block)}", 3)
        except RequestError:
            pass

    def push_hook(self, sid: int) -> None:
        """After a (re)start: the hook's settings live in the server's memory."""
        with self.lock:
            mine = [(dst, v) for (src, dst), v in self.hook.items() if src == sid]
        for dst, (drop, lo, hi, block) in mine:
            self.send_fault(sid, dst, drop, lo, hi, block)

    def heal(self) -> None:
        for sid in list(self.paused):
            self.resume(sid)
        with self.lock:
            self.delay = (0, 0, 0.0)
        self.set_network(set(), 0.0)

    def stop_all(self) -> None:
        with self.lock:
            procs = list(self.procs.items())
            self.procs.clear()
        for _, p in procs:
            try:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _, p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass


# ----------------------------------------------------------------------------------------------
# Clients
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Record:
    process: int
    call: float
    ret: Optional[float]  # None: unknown outcome
    kind: str             # read | write | cas | delete
    key: str
    input: Any
    output: Any
    outcome: str          # ok | fail | unknown
    node: int
    error: str = ""


class Workload:
    def __init__(self, cluster: Cluster, rng: random.Random, clients: int, keys: int,
                 key_period: float, t0: float, timeout: float):
        self.cluster = cluster
        self.seed = rng.randrange(1 << 30)
        self.clients = clients
        self.keys = keys
        self.key_period = key_period
        self.t0 = t0
        self.timeout = timeout
        self.records: List[Record] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.counter = 0
        self.next_process = clients
        self.used_keys: set = set()
        self.threads: List[threading.Thread] = []

    def value(self) -> str:
        with self.lock:
            self.counter += 1
            return f"v{self.counter}"

    def active_keys(self) -> List[str]:
        gen = int((time.monotonic() - self.t0) // self.key_period)
        return [f"g{gen}k{i}" for i in range(self.keys)]

    def add(self, rec: Record) -> None:
        with self.lock:
            self.records.append(rec)
            self.used_keys.add(rec.key)

    def run_op(self, process: int, node: int, kind: str, key: str, arg: Any,
               timeout: Optional[float] = None) -> Record:
        if kind == "read":
            line = f"get {key}"
        elif kind == "write":
            line = f"set {key} {arg}"
        elif kind == "cas":
            line = f"cas {key} {NIL if arg[0] is None else arg[0]} {arg[1]}"
        else:
            line = f"del {key}"
        call = time.monotonic()
        try:
            answer = request(self.cluster.sock(node), line, timeout or self.timeout)
        except RequestError as e:
            # Not sent (refused, no socket): it cannot have happened. Sent: unknown.
            outcome = "unknown" if e.sent and kind != "read" else "fail"
            return Record(process, call, None if outcome == "unknown" else time.monotonic(),
                          kind, key, arg, None, outcome, node, str(e))
        ret = time.monotonic()
        if answer.startswith("ERR"):
            # A write whose session gave up may still be applied later: unknown. A read that
            # failed observed nothing.
            outcome = "fail" if kind == "read" else "unknown"
            return Record(process, call, None if outcome == "unknown" else ret, kind, key, arg,
                          None, outcome, node, answer)
        if kind == "read":
            out: Any = None if answer == NIL else answer
        elif kind == "write":
            out = None
        else:
            out = answer == "True"
        return Record(process, call, ret, kind, key, arg, out, "ok", node)

    def worker(self, wid: int) -> None:
        rng = random.Random(self.seed * 1000 + wid)
        process = wid
        last_seen: Dict[str, Optional[str]] = {}
        while not self.stop.is_set():
            members = [m for m in self.cluster.members if m in self.cluster.procs]
            if not members:
                time.sleep(0.1)
                continue
            node = rng.choice(members)
            key = rng.choice(self.active_keys())
            x = rng.random()
            if x < 0.4:
                kind, arg = "read", None
            elif x < 0.7:
                kind, arg = "write", self.value()
            elif x < 0.9:
                kind, arg = "cas", (last_seen.get(key), self.value())
            else:
                kind, arg = "delete", None
            rec = self.run_op(process, node, kind, key, arg)
            self.add(rec)
            if rec.outcome == "ok":
                if kind == "read":
                    last_seen[key] = rec.output
                elif kind == "write" or (kind == "cas" and rec.output):
                    last_seen[key] = arg if kind == "write" else arg[1]
                elif kind == "delete":
                    last_seen[key] = None
            if rec.outcome == "unknown":
                with self.lock:  # Jepsen's rule: a process with an open operation is retired
                    process = self.next_process
                    self.next_process += 1
            if rec.outcome != "ok":
                time.sleep(0.05 + rng.random() * 0.1)

    def start(self) -> None:
        for w in range(self.clients):
            t = threading.Thread(target=self.worker, args=(w,), daemon=True,
                                 name=f"client-{w}")
            t.start()
            self.threads.append(t)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.timeout + 5)


# ----------------------------------------------------------------------------------------------
# The campaign
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Config:
    duration: float = 60.0       # seconds of faults and load
    nodes: int = 3
    clients: int = 4
    keys: int = 4                # keys written at a time
    key_period: float = 15.0     # a new set of keys every so many seconds
    seed: int = 1
    kinds: Tuple[str, ...] = KINDS
    hold: Tuple[float, float] = (2.0, 5.0)   # how long a fault lasts
    gap: Tuple[float, float] = (1.0, 3.0)    # quiet time between faults
    netns: Optional[bool] = None             # None: use namespaces when permitted
    out: Optional[str] = None                # report directory (None: no files)
    check_budget: float = 60.0               # checker seconds per key
    request_timeout: float = 4.0             # server side; clients wait 2 s longer
    snapshot_entries: int = 300              # small, so that snapshots happen
    recovery_timeout: float = 60.0
    plot: bool = True


@dataclasses.dataclass
class Fault:
    kind: str
    detail: str
    start: float
    end: float = 0.0
    notes: str = ""


class Campaign:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.faults: List[Fault] = []
        self.problems: List[str] = []      # failed checks (the campaign fails)
        self.warnings: List[str] = []      # availability notes (reported, not failures)
        self.samples: List[Tuple[float, int, int, str]] = []  # (t, id, index, hash)
        self.disk_results: List[Dict[str, Any]] = []
        self.root = tempfile.mkdtemp(prefix="craft-campaign-")
        self.net: Optional[Network] = None
        self.cluster: Optional[Cluster] = None
        self.workload: Optional[Workload] = None
        self.net_note = ""
        self.t0 = time.monotonic()

    # -- set-up and tear-down ------------------------------------------------------------------

    def setup(self) -> None:
        want = self.cfg.netns
        ok, why = netns_permitted() if want is not False else (False, "disabled (--no-netns)")
        if want and not ok:
            raise RuntimeError(f"network namespaces were required but: {why}")
        if ok:
            self.net = NetnsNetwork()
            self.net_note = ("network namespaces: one per server (10.213.0.<id>, veth into a "
                             "bridge); partitions and loss by iptables in each namespace; delay "
                             "and reordering by the transport hook")
        else:
            self.net = HookNetwork()
            self.net_note = (f"NO network namespaces ({why}): every server on 127.0.0.1; "
                             "partitions, loss, delay and reordering all by craft's transport "
                             "hook (Node.set_faults)")
        log(self.net_note)
        self.cluster = Cluster(self.root, self.net, self.cfg.nodes, self.cfg.snapshot_entries,
                               self.cfg.request_timeout)
        for sid in list(self.cluster.members):
            if not self.cluster.start(sid):
                raise RuntimeError(f"server {sid} did not start: {self.tail(sid)}")
        if self.cluster.wait_leader(30) is None:
            raise RuntimeError("no leader after 30 s")

    def teardown(self) -> None:
        if self.cluster is not None:
            self.cluster.stop_all()
        if self.net is not None:
            self.net.teardown()
        if self.cfg.out:
            os.makedirs(os.path.join(self.cfg.out, "logs"), exist_ok=True)
            for f in glob.glob(os.path.join(self.root, "kv*.log")):
                shutil.copy(f, os.path.join(self.cfg.out, "logs"))
        shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, sid: int, n: int = 2000) -> str:
        try:
            with open(self.cluster.log_path(sid), "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def now(self) -> float:
        return time.monotonic() - self.t0

    # -- faults ----------------------------------------------------------------------------------

    def hold(self) -> None:
        time.sleep(self.rng.uniform(*self.cfg.hold))

    def pick(self, leader_bias: float = 0.5) -> int:
        c = self.cluster
        lead = c.leader()
        up = [m for m in c.members if m in c.procs and m not in c.paused]
        if lead is not None and self.rng.random() < leader_bias:
            return lead
        return self.rng.choice(up or c.members)

    def f_kill(self, f: Fault) -> None:
        c = self.cluster
        victim = self.pick()
        f.detail = f"kill -9 server {victim}" + (" (leader)" if victim == c.leader() else "")
        c.kill(victim)
        self.hold()
        if not c.start(victim):
            self.problems.append(f"server {victim} did not restart after kill -9: "
                                 f"{self.tail(victim, 600)}")

    def f_pause(self, f: Fault) -> None:
        c = self.cluster
        victim = self.pick()
        f.detail = f"SIGSTOP server {victim}" + (" (leader)" if victim == c.leader() else "")
        c.pause(victim)
        self.hold()
        c.resume(victim)

    def majority(self) -> int:
        return len(self.cluster.members) // 2 + 1

    def f_partition_leader(self, f: Fault) -> None:
        c = self.cluster
        lead = c.leader() or self.rng.choice(c.members)
        others = [m for m in c.members if m != lead]
        cuts = {(lead, o) for o in others} | {(o, lead) for o in others}
        f.detail = f"isolate leader {lead} from {others}"
        c.set_network(cuts, 0.0)
        self.hold()
        now = c.leader()
        f.notes = f"new leader {now}" if now not in (None, lead) else "no new leader yet"

    def f_partition_split(self, f: Fault) -> None:
        c = self.cluster
        ms = list(c.members)
        self.rng.shuffle(ms)
        minority = ms[:len(ms) - self.majority()]
        majority = ms[len(minority):]
        cuts = {(a, b) for a in minority for b in majority} | \
               {(b, a) for a in minority for b in majority}
        f.detail = f"split {sorted(minority)} | {sorted(majority)}"
        c.set_network(cuts, 0.0)
        self.hold()

    def f_partition_oneway(self, f: Fault) -> None:
        c = self.cluster
        lead = c.leader() or self.rng.choice(c.members)
        others = [m for m in c.members if m != lead]
        if self.rng.random() < 0.5:
            cuts = {(lead, o) for o in others}
            f.detail = f"one-way: leader {lead} cannot send to {others} (but hears them)"
        else:
            cuts = {(o, lead) for o in others}
            f.detail = f"one-way: leader {lead} hears nothing from {others} (but sends)"
        c.set_network(cuts, 0.0)
        self.hold()

    def f_partition_ring(self, f: Fault) -> None:
        c = self.cluster
        ms = list(c.members)
        self.rng.shuffle(ms)
        n = len(ms)
        cuts = set()
        if n >= 5:
            k = (self.majority() - 1 + 1) // 2  # each sees itself and k neighbours each side
            for i, a in enumerate(ms):
                for j, b in enumerate(ms):
                    d = min((i - j) % n, (j - i) % n)
                    if a != b and d > k:
                        cuts.add((a, b))
            f.detail = f"majorities ring {ms} (each server reaches its {2 * k} nearest)"
        else:
            bridge, rest = ms[0], ms[1:]
            half = len(rest) // 2
            left, right = rest[:half] or rest[:1], rest[half:] if half else rest[1:]
            cuts = {(a, b) for a in left for b in right} | {(b, a) for a in left for b in right}
            f.detail = f"bridge: {left} | {right}, {bridge} reaches both"
        c.set_network(cuts, 0.0)
        self.hold()

    def f_loss(self, f: Fault) -> None:
        p = round(self.rng.uniform(0.05, 0.3), 2)
        how = "iptables -m statistic" if self.net.mode == "netns" else "transport hook"
        f.detail = f"random loss p={p} on every link ({how})"
        self.cluster.set_network(set(), p)
        self.hold()

    def f_delay(self, f: Fault) -> None:
        hi = self.rng.choice([20, 50, 100, 200])
        drop = self.rng.choice([0.0, 0.0, 0.05])
        f.detail = f"delay U[0, {hi}] ms (reorders), drop {drop}, every link (transport hook)"
        self.cluster.set_delay(0, hi, drop)
        self.hold()

    def f_combo(self, f: Fault) -> None:
        """Several faults at once: a random split, a server killed, another paused, loss and
        delay everywhere. Often no majority is left: safety must hold all the same."""
        c = self.cluster
        ms = list(c.members)
        self.rng.shuffle(ms)
        cut = self.rng.randint(1, len(ms) - 1)
        a, b = ms[:cut], ms[cut:]
        cuts = {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
        victim, sleeper = self.rng.sample(ms, 2)
        loss = round(self.rng.uniform(0.0, 0.15), 2)
        f.detail = (f"split {sorted(a)} | {sorted(b)}, kill -9 {victim}, SIGSTOP {sleeper}, "
                    f"loss {loss}, delay U[0, 50] ms")
        c.set_network(cuts, loss)
        c.set_delay(0, 50)
        c.kill(victim)
        c.pause(sleeper)
        self.hold()
        c.heal()
        if not c.start(victim):
            self.problems.append(f"server {victim} did not restart: {self.tail(victim, 600)}")

    def f_kill_all(self, f: Fault) -> None:
        """Every server killed at once (kill -9), then all restarted: only what was fsynced
        survives, and that must include every acknowledged write."""
        c = self.cluster
        f.detail = f"kill -9 every server {sorted(c.members)} at once"
        for sid in list(c.members):
            c.kill(sid)
        time.sleep(self.rng.uniform(0.2, 1.0))
        for sid in list(c.members):
            if not c.start(sid):
                self.problems.append(f"server {sid} did not restart: {self.tail(sid, 600)}")

    def f_transfer(self, f: Fault) -> None:
        c = self.cluster
        lead = c.leader()
        others = [m for m in c.members if m != lead and m in c.procs]
        target = self.rng.choice(others) if others and self.rng.random() < 0.7 else 0
        ok, answer = c.admin(f"transfer {target}", 15)
        new = c.wait_leader(10)
        f.detail = f"transfer leadership from {lead} to {target or 'any'}: now {new}"
        if not ok:
            f.notes = f"transfer refused: {answer}"

    def f_membership(self, f: Fault) -> None:
        """Adds a fresh server, waits for it to become a voter, removes another (sometimes the
        leader) and retires its process and data."""
        c = self.cluster
        new = c.next_id
        c.next_id += 1
        if not c.start(new, join=True):
            self.problems.append(f"joining server {new} did not start: {self.tail(new, 600)}")
            return
        ok, answer = c.admin(f"add {new} {c.net.address(new)}", 20)
        if not ok:
            f.detail = f"add {new}: refused ({answer}); not added"
            self.warnings.append(f"add server {new} failed: {answer}")
            c.kill(new)
            return
        c.members.append(new)
        deadline = time.monotonic() + 30
        voter = False
        while time.monotonic() < deadline and not voter:
            lead = c.leader()
            st = c.status(lead) if lead else None
            voter = bool(st and str(new) in st.get("voters", "").split(","))
            time.sleep(0.2)
        lead = c.leader()
        olds = [m for m in c.members if m != new]
        old = lead if lead in olds and self.rng.random() < 0.3 else self.rng.choice(
            [m for m in olds if m != lead] or olds)
        ok, answer = c.admin(f"remove {old}", 20)
        f.detail = (f"add server {new} ({'voter' if voter else 'NOT promoted in 30 s'}), "
                    f"remove server {old}" + (" (the leader)" if old == lead else ""))
        if not voter:
            self.warnings.append(f"server {new} was not promoted to voter within 30 s")
        if not ok:
            f.notes = f"remove {old} refused: {answer}"
            self.warnings.append(f"remove server {old} failed: {answer}")
            return
        c.members.remove(old)
        time.sleep(1.0)
        self.sample_digest(old)   # its applied sequence stays in the prefix check
        c.kill(old)
        shutil.rmtree(c.data_dir(old), ignore_errors=True)

    def f_disk(self, f: Fault) -> None:
        """With one server down: flip a bit in the middle of its newest WAL segment, or cut its
        tail; it must recover the tail or refuse to start naming the file and the offset."""
        c = self.cluster
        victim = self.pick(0.3)
        c.kill(victim)
        segs = sorted(glob.glob(os.path.join(c.data_dir(victim), "wal-*.seg")))
        result: Dict[str, Any] = {"server": victim, "t": round(self.now(), 1)}
        if not segs:
            f.detail = f"server {victim}: no WAL segment to damage"
            c.start(victim)
            return
        seg = segs[-1]
        size = written_size(seg)  # preallocated segments end in zeros: damage what was written
        mode = "bitflip" if len([d for d in self.disk_results if d.get("mode") == "bitflip"]) \
            <= len([d for d in self.disk_results if d.get("mode") == "truncate"]) else "truncate"
        if size <= 48:
            mode = "none"
        if mode == "bitflip":
            off = 40 + (size - 40) // 2
            bit = self.rng.randrange(8)
            with open(seg, "r+b") as fh:
                fh.seek(off)
                b = fh.read(1)[0]
                fh.seek(off)
                fh.write(bytes([b ^ (1 << bit)]))
            what = (f"flipped bit {bit} at offset {off} of {os.path.basename(seg)} ({size} B "
                    f"written)")
        elif mode == "truncate":
            cut = self.rng.randint(1, min(size - 40, 300))
            os.truncate(seg, size - cut)
            off = size - cut
            what = f"cut {os.path.basename(seg)} from {size} to {off} B"
        else:
            off, what = 0, f"{os.path.basename(seg)} holds no record"
        result.update(mode=mode, file=os.path.basename(seg), offset=off, what=what)
        f.detail = f"server {victim} down; {what}"
        self.hold()
        started = c.start(victim, wait=20)
        if started:
            time.sleep(0.5)
            if c.exited(victim) is not None:
                started = False
        if started:
            tail = self.tail(victim, 4000)
            result["outcome"] = "recovered" + (" (torn tail cut)" if "torn_tail" in tail else "")
        else:
            code = c.reap(victim)
            if code is None:
                c.kill(victim)
            msg = self.tail(victim, 1500)
            line = next((ln for ln in msg.splitlines()[::-1] if "cannot open" in ln), "")
            result["outcome"] = "refused to start"
            result["message"] = line.strip()
            named = os.path.basename(seg) in line and re.search(r"offset\D{0,3}\d+", line)
            if not named:
                self.problems.append(f"server {victim} did not start after {what} and its "
                                     f"error does not name the file and offset: {msg[-600:]}")
            # The operator's repair: remove it, wipe its data, add it back empty.
            ok, answer = c.admin(f"remove {victim}", 20)
            if ok:
                c.members.remove(victim)
                shutil.rmtree(c.data_dir(victim), ignore_errors=True)
                c.joined[victim] = True
                if c.start(victim, join=True):
                    ok, answer = c.admin(f"add {victim} {c.net.address(victim)}", 20)
                    if ok:
                        c.members.append(victim)
                result["repair"] = "removed, wiped, re-added" if ok else f"failed: {answer}"
            else:
                result["repair"] = f"remove failed: {answer}"
            if not ok:
                self.warnings.append(f"repair of server {victim} failed: {answer}")
        f.notes = result["outcome"] + (f"; {result.get('repair')}" if "repair" in result else "")
        self.disk_results.append(result)

    # -- observation -----------------------------------------------------------------------------

    def sample_digest(self, sid: int) -> Optional[Tuple[int, str]]:
        if sid in self.cluster.paused:
            return None
        try:
            answer = self.cluster.ask(sid, "digest", 2)
        except RequestError:
            return None
        parts = answer.split()
        if len(parts) != 2 or not parts[0].isdigit():
            return None
        self.samples.append((self.now(), sid, int(parts[0]), parts[1]))
        return int(parts[0]), parts[1]

    def sampler(self, stop: threading.Event) -> None:
        while not stop.wait(2.0):
            for sid in self.cluster.running():
                self.sample_digest(sid)

    def wait_recovery(self, timeout: float) -> bool:
        """A leader, every member running and answering, all agreeing on the leader."""
        c = self.cluster
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sts = {m: c.status(m) for m in c.members}
            if all(sts.values()):
                leaders = {s["leader"] for s in sts.values()}
                if len(leaders) == 1 and leaders != {"0"}:
                    return True
            time.sleep(0.2)
        return False

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> Dict[str, Any]:
        cfg = self.cfg
        self.setup()
        c = self.cluster
        self.t0 = time.monotonic()
        self.workload = Workload(c, self.rng, cfg.clients, cfg.keys, cfg.key_period, self.t0,
                                 cfg.request_timeout + 2)
        stop_sampler = threading.Event()
        sampler = threading.Thread(target=self.sampler, args=(stop_sampler,), daemon=True)
        sampler.start()
        self.workload.start()
        order: List[str] = []
        time.sleep(self.rng.uniform(*cfg.gap))
        # Until the duration has passed and every kind has run at least once.
        while self.now() < cfg.duration or set(cfg.kinds) - {f.kind for f in self.faults}:
            if not order:
                order = list(cfg.kinds)
                self.rng.shuffle(order)
            kind = order.pop()
            f = Fault(kind, "", self.now())
            log(f"fault {kind} ...")
            try:
                getattr(self, "f_" + kind.replace("-", "_"))(f)
            except Exception as e:  # a bug of the runner, not of craft: report it
                self.problems.append(f"the runner failed during {kind}: {type(e).__name__}: {e}")
            c.heal()
            f.end = self.now()
            self.faults.append(f)
            log(f"  {f.detail} {('[' + f.notes + ']') if f.notes else ''}")
            for sid in list(c.members):  # a member that died by itself: note it, restart it
                code = c.reap(sid)
                if code is not None:
                    self.problems.append(f"server {sid} exited by itself (code {code}): "
                                         f"{self.tail(sid, 600)}")
                    c.start(sid)
            if not self.wait_recovery(cfg.recovery_timeout):
                self.warnings.append(f"no recovery within {cfg.recovery_timeout:.0f} s after "
                                     f"{kind} at {f.start:.1f} s")
            time.sleep(self.rng.uniform(*cfg.gap))
        log("stopping clients, healing, waiting for recovery")
        self.workload.finish()
        stop_sampler.set()
        sampler.join(5)
        c.heal()
        for sid in c.members:
            if sid not in c.procs:
                c.start(sid)
        recovered = self.wait_recovery(cfg.recovery_timeout)
        if not recovered:
            self.problems.append(f"the cluster did not recover within {cfg.recovery_timeout:.0f}"
                                 f" s after everything was healed")
        return self.final_checks()

    # -- checks ----------------------------------------------------------------------------------

    def converge(self, timeout: float) -> Dict[int, Tuple[int, str]]:
        """Waits until every member applied the same index; returns their digests."""
        deadline = time.monotonic() + timeout
        digests: Dict[int, Tuple[int, str]] = {}
        while time.monotonic() < deadline:
            digests = {}
            for sid in self.cluster.members:
                d = self.sample_digest(sid)
                if d:
                    digests[sid] = d
            if len(digests) == len(self.cluster.members) and \
                    len({d[0] for d in digests.values()}) == 1:
                return digests
            time.sleep(0.3)
        return digests

    def final_checks(self) -> Dict[str, Any]:
        cfg, c, w = self.cfg, self.cluster, self.workload
        # 1. Read every key, linearizably, from every member: part of the history.
        for key in sorted(w.used_keys):
            for sid in c.members:
                rec = w.run_op(-1, sid, "read", key, None, 15)
                w.add(rec)
                if rec.outcome != "ok":
                    self.problems.append(f"final read of {key} on server {sid} failed: "
                                         f"{rec.error}")
        # 2. Replicas: every member at the same index with the same hash; every sample (from
        #    any time, any server, removed ones too) agrees with every other server that knows
        #    its index.
        digests = self.converge(30)
        replica = self.check_replicas(digests)
        # 3. Linearizability (kv model, per key), 4. acknowledged writes.
        ops = []
        for r in w.records:
            if r.outcome == "fail":
                continue  # definitely did not happen (writes) or observed nothing (reads)
            inp = tuple(r.input) if r.kind == "cas" else r.input
            ops.append(linearizability.Op(r.process, r.call, r.ret, r.kind, inp, r.output,
                                          r.key))
        log(f"checking {len(ops)} operations on {len(w.used_keys)} keys")
        result = linearizability.check(ops, model="kv", time_budget_s=cfg.check_budget)
        lost = self.check_acknowledged()
        return self.summarize(result, lost, replica, digests)

    def check_replicas(self, digests: Dict[int, Tuple[int, str]]) -> Dict[str, Any]:
        c = self.cluster
        out: Dict[str, Any] = {"final": {str(k): list(v) for k, v in digests.items()}}
        if len(digests) != len(c.members):
            self.problems.append(f"not every member answered 'digest': {sorted(digests)} of "
                                 f"{sorted(c.members)}")
        if len({d for d in digests.values()}) > 1:
            self.problems.append(f"members did not converge to one (index, hash): {digests}")
        longest = max(digests.items(), key=lambda kv: kv[1][0])[0] if digests else None
        indexes = sorted({s[2] for s in self.samples})
        known: Dict[int, Dict[int, str]] = {}
        for sid in c.members:
            for i in indexes:
                try:
                    answer = c.ask(sid, f"digest {i}", 5)
                except RequestError:
                    continue
                parts = answer.split()
                if len(parts) == 2:
                    known.setdefault(i, {})[sid] = parts[1]
        verified = unverifiable = 0
        for t, sid, i, h in self.samples:
            ref = known.get(i, {})
            if not ref:
                unverifiable += 1
                continue
            bad = {k: v for k, v in ref.items() if v != h}
            if bad:
                self.problems.append(f"server {sid} had applied a different sequence: at "
                                     f"{t:.1f} s its hash at index {i} was {h}, servers "
                                     f"{sorted(bad)} have {sorted(set(bad.values()))}")
            else:
                verified += 1
        out.update(longest=longest, samples=len(self.samples), verified=verified,
                   unverifiable=unverifiable)
        return out

    def check_acknowledged(self) -> Dict[str, Any]:
        """Every write acknowledged ok (a set, or a cas that answered True) must be explained by
        what the final reads return. Values are never written twice, so the final value names
        the mutation P that wrote it; if P returned before the acknowledged write w was even
        called, w came after P and something else should be there: w was lost. A final "missing"
        is likewise impossible if every delete of the key returned before w was called."""
        recs = self.workload.records
        by_key: Dict[str, List[Record]] = {}
        for r in recs:
            by_key.setdefault(r.key, []).append(r)
        checked, lost = 0, []
        for key, rs in by_key.items():
            finals = [r for r in rs if r.process == -1 and r.outcome == "ok"]
            muts = [r for r in rs if r.kind != "read" and r.outcome != "fail" and r.process != -1]
            writer: Dict[Any, Record] = {}
            for m in muts:
                if m.kind == "write":
                    writer[m.input] = m
                elif m.kind == "cas":
                    writer[m.input[1]] = m
            deletes = [m for m in muts if m.kind == "delete"]
            acked = [m for m in muts if m.outcome == "ok" and
                     (m.kind == "write" or (m.kind == "cas" and m.output))]
            checked += len(acked) if finals else 0
            for fr in finals:
                fv = fr.output
                if fv is not None and fv not in writer:
                    lost.append(f"key {key}: server {fr.node} reads {fv!r} at the end, a value "
                                f"nobody wrote")
                    continue
                for w in acked:
                    wv = w.input if w.kind == "write" else w.input[1]
                    if fv is None:
                        if all(d.ret is not None and d.ret < w.call for d in deletes):
                            lost.append(f"key {key}: {w.kind} of {wv} acknowledged at "
                                        f"{w.ret - self.t0:.2f} s, no delete could follow it, "
                                        f"but server {fr.node} finds the key missing at the end")
                    else:
                        p = writer[fv]
                        if p is not w and p.ret is not None and p.ret < w.call:
                            lost.append(f"key {key}: {w.kind} of {wv} acknowledged at "
                                        f"{w.ret - self.t0:.2f} s, but server {fr.node} reads "
                                        f"{fv!r} at the end, written by an operation that "
                                        f"returned at {p.ret - self.t0:.2f} s, before it")
        for m in lost[:50]:
            self.problems.append("lost write: " + m)
        return {"checked": checked, "lost": lost}

    # -- report ----------------------------------------------------------------------------------

    def summarize(self, result: Any, lost: Dict[str, Any], replica: Dict[str, Any],
                  digests: Dict[int, Tuple[int, str]]) -> Dict[str, Any]:
        w = self.workload
        recs = w.records
        counts: Dict[str, Dict[str, int]] = {}
        for r in recs:
            counts.setdefault(r.kind, {"ok": 0, "fail": 0, "unknown": 0})[r.outcome] += 1
        per_key = result.per_key.values()
        verdicts = {v: sum(1 for k in per_key if k.verdict == v)
                    for v in ("ok", "violation", "unknown")}
        if result.verdict == "violation":
            self.problems.append("not linearizable: " + result.explanation[:4000])
        status = "fail" if self.problems else ("inconclusive" if result.verdict == "unknown"
                                               else "pass")
        fault_counts: Dict[str, int] = {}
        for f in self.faults:
            fault_counts[f.kind] = fault_counts.get(f.kind, 0) + 1
        lat = sorted((r.ret - r.call) * 1000 for r in recs if r.outcome == "ok" and
                     r.process != -1)
        pct = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 1)) if lat else \
            (lambda q: None)
        summary = {
            "status": status,
            "seed": self.cfg.seed,
            "config": {k: v for k, v in dataclasses.asdict(self.cfg).items()},
            "network": self.net_note,
            "network_mode": self.net.mode,
            "duration_s": round(self.now(), 1),
            "operations": counts,
            "operations_total": len(recs),
            "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": lat[-1] if lat else None},
            "faults": fault_counts,
            "checker": {"verdict": result.verdict, "keys": verdicts,
                        "operations": sum(k.ops for k in per_key),
                        "elapsed_s": round(result.elapsed_s, 2),
                        "explanation": result.explanation[:4000]},
            "acknowledged_writes": {"checked": lost["checked"], "lost": lost["lost"]},
            "replicas": replica,
            "disk": self.disk_results,
            "problems": self.problems,
            "warnings": self.warnings,
            "members": sorted(self.cluster.members),
        }
        if self.cfg.out:
            self.write_report(summary, result)
        return summary

    def write_report(self, summary: Dict[str, Any], result: Any) -> None:
        out = self.cfg.out
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "history.jsonl"), "w") as fh:
            for r in self.workload.records:
                d = dataclasses.asdict(r)
                d["call"] = round(r.call - self.t0, 6)
                d["ret"] = None if r.ret is None else round(r.ret - self.t0, 6)
                fh.write(json.dumps(d) + "\n")
        faults = [dataclasses.asdict(f) for f in self.faults]
        with open(os.path.join(out, "report.json"), "w") as fh:
            json.dump(dict(summary, fault_log=faults), fh, indent=1, default=str)
        bad = [k for k in result.per_key.values() if k.verdict != "ok"]
        lines = [f"# Fault campaign, seed {self.cfg.seed}: {summary['status'].upper()}", "",
                 f"- duration {summary['duration_s']} s, {self.cfg.nodes} servers, "
                 f"{self.cfg.clients} clients, final members {summary['members']}",
                 f"- network: {summary['network']}",
                 f"- operations: {summary['operations_total']} "
                 + ", ".join(f"{k} {v}" for k, v in sorted(summary['operations'].items())),
                 f"- latency of ok operations: p50 {summary['latency_ms']['p50']} ms, "
                 f"p99 {summary['latency_ms']['p99']} ms, max {summary['latency_ms']['max']} ms",
                 f"- checker (kv model, per key, {self.cfg.check_budget:.0f} s budget per key): "
                 f"**{result.verdict}**; keys {summary['checker']['keys']}; "
                 f"{summary['checker']['elapsed_s']} s",
                 f"- acknowledged writes checked against the final reads: "
                 f"{summary['acknowledged_writes']['checked']}"
                 f", lost: {len(summary['acknowledged_writes']['lost'])}",
                 f"- replicas: final {summary['replicas']['final']}; digest samples "
                 f"{summary['replicas']['samples']}, verified {summary['replicas']['verified']}, "
                 f"unverifiable {summary['replicas']['unverifiable']}",
                 f"- faults: {summary['faults']}", ""]
        if self.problems:
            lines += ["## Problems", ""] + [f"- {p}" for p in self.problems] + [""]
        if self.warnings:
            lines += ["## Warnings (availability)", ""] + [f"- {p}" for p in self.warnings] + [""]
        if bad:
            lines += ["## Keys not found linearizable", ""]
            for k in bad[:20]:
                lines.append(f"- {k.key!r}: {k.verdict}: {k.explanation[:2000]}")
            lines.append("")
        if self.disk_results:
            lines += ["## Disk faults", ""] + [f"- {json.dumps(d)}" for d in self.disk_results]
            lines.append("")
        lines += ["## Faults", "", "| start s | end s | kind | what | notes |",
                  "|---:|---:|---|---|---|"]
        for f in self.faults:
            lines.append(f"| {f.start:.1f} | {f.end:.1f} | {f.kind} | {f.detail} | {f.notes} |")
        with open(os.path.join(out, "report.md"), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        if self.cfg.plot:
            try:
                self.plot(os.path.join(out, "latency.png"))
            except ImportError:
                log("no matplotlib: latency.png skipped (make venv installs it)")

    def plot(self, path: str) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        recs = [r for r in self.workload.records if r.process != -1]
        colours = {}
        palette = plt.get_cmap("tab20").colors
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(16, 8), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
        for f in self.faults:
            first = f.kind not in colours
            col = colours.setdefault(f.kind, palette[len(colours) % len(palette)])
            ax.axvspan(f.start, f.end, color=col, alpha=0.25, lw=0,
                       label=f.kind if first else None)
            ax2.axvspan(f.start, f.end, color=col, alpha=0.25, lw=0)
        styles = {"ok": ("tab:blue", "."), "fail": ("tab:red", "x"),
                  "unknown": ("tab:orange", "^")}
        for outcome, (col, mk) in styles.items():
            xs = [r.call - self.t0 for r in recs if r.outcome == outcome]
            ys = [((r.ret if r.ret is not None else r.call + self.cfg.request_timeout + 2)
                   - r.call) * 1000 for r in recs if r.outcome == outcome]
            ax.scatter(xs, ys, s=4, c=col, marker=mk, label=f"{outcome} ({len(xs)})")
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"craft fault campaign, seed {self.cfg.seed}: {self.net.mode} network, "
                     f"{self.cfg.nodes} servers, {self.cfg.clients} clients")
        ax.legend(loc="upper left", fontsize=7, ncol=4)
        end = max([r.call - self.t0 for r in recs] or [1])
        bins = [0] * (int(end) + 1)
        for r in recs:
            if r.outcome == "ok":
                bins[int(r.call - self.t0)] += 1
        ax2.plot(range(len(bins)), bins, lw=0.8, c="k")
        ax2.set_ylabel("ok ops/s")
        ax2.set_xlabel("time (s)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def run(cfg: Config) -> Dict[str, Any]:
    """Runs a campaign; everything it creates is removed before it returns or raises."""
    camp = Campaign(cfg)
    old = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return camp.run()
    finally:
        if camp.workload is not None:
            camp.workload.stop.set()
        camp.teardown()
        if in_main:
            signal.signal(signal.SIGTERM, old)


def recheck(directory: str, budget: float) -> int:
    """Checks a saved history.jsonl again (linearizability and acknowledged writes)."""
    from types import SimpleNamespace
    recs = []
    with open(os.path.join(directory, "history.jsonl")) as fh:
        for line in fh:
            d = json.loads(line)
            if d["kind"] == "cas":
                d["input"] = tuple(d["input"])
            recs.append(Record(**d))
    ops = [linearizability.Op(r.process, r.call, r.ret, r.kind, r.input, r.output, r.key)
           for r in recs if r.outcome != "fail"]
    result = linearizability.check(ops, model="kv", time_budget_s=budget)
    camp = object.__new__(Campaign)
    camp.problems, camp.t0 = [], 0.0
    camp.workload = SimpleNamespace(records=recs)
    acked = camp.check_acknowledged()
    keys = {v: sum(1 for k in result.per_key.values() if k.verdict == v)
            for v in ("ok", "violation", "unknown")}
    print(f"{directory}: {len(recs)} operations; linearizability {result.verdict} "
          f"(keys {keys}, {result.elapsed_s:.1f} s); acknowledged writes checked "
          f"{acked['checked']}, lost {len(acked['lost'])}")
    for line in ([result.explanation] if result.verdict != "ok" else []) + acked["lost"][:20]:
        print("  " + line[:2000])
    if result.verdict == "violation" or acked["lost"]:
        return 1
    return 2 if result.verdict == "unknown" else 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=60, help="seconds of faults (default 60)")
    p.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    p.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--keys", type=int, default=4)
    p.add_argument("--key-period", type=float, default=15)
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    p.add_argument("--no-netns", action="store_true", help="use the transport hook only")
    p.add_argument("--budget", type=float, default=60, help="checker seconds per key")
    p.add_argument("--snapshot-entries", type=int, default=300)
    p.add_argument("--out", default=None, help="report directory (default /tmp/craft-campaign-SEED)")
    p.add_argument("--recheck", metavar="DIR",
                   help="only check the history.jsonl of an earlier report again")
    a = p.parse_args(argv)
    if a.recheck:
        return recheck(a.recheck, a.budget)
    seed = a.seed if a.seed is not None else random.randrange(1 << 31)
    kinds = tuple(k for k in a.kinds.split(",") if k)
    for k in kinds:
        if k not in KINDS + EXTRA_KINDS:
            p.error(f"unknown fault kind {k!r}; known: {', '.join(KINDS + EXTRA_KINDS)}")
    cfg = Config(duration=a.duration, nodes=a.nodes, clients=a.clients, keys=a.keys,
                 key_period=a.key_period, seed=seed, kinds=kinds,
                 netns=False if a.no_netns else None, out=a.out or f"/tmp/craft-campaign-{seed}",
                 check_budget=a.budget, snapshot_entries=a.snapshot_entries)
    log(f"seed {seed}, {a.duration:.0f} s, report in {cfg.out}")
    try:
        s = run(cfg)
    except Exception as e:
        log(f"the campaign could not run: {type(e).__name__}: {e}")
        return 3
    print(open(os.path.join(cfg.out, "report.md")).read())
    return {"pass": 0, "fail": 1, "inconclusive": 2}[s["status"]]


if __name__ == "__main__":
    sys.exit(main())
