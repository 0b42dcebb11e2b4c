#!/usr/bin/env python3
"""Power cuts against a real craft cluster: three node processes on 127.0.0.1 under the lazyfs
shim (lazyfs_shim.c), writers, and at random points a power cut of a random node, of the leader,
of two nodes at once or of all of them: SIGKILL, then everything the node had not made durable
is taken away (lazyfs.power_cut: all of it, back to a random point, or with a torn write), and
the node is started again on what is left.

    .venv/bin/python tests/powerloss/powercut.py --store disk   --duration 300 --seed 7
    .venv/bin/python tests/powerloss/powercut.py --store python --duration 300
    .venv/bin/python tests/powerloss/powercut.py --store lua    --duration 300 --out /tmp/pc

--store disk: Python nodes on craft's durable C store (node.py); python: Python nodes on the log
store written in Python (file_store.py); lua: Lua nodes on the log store written in Lua
(node.lua, file_store.lua). --no-fsync runs the nodes with syncing off: the negative control,
which must fail (it shows the campaign can see lost writes).

Pass, checked at the end once every node has applied the same last index:
  - no acknowledged write lost: every "set" answered OK is in every node's final state (keys
    are never reused, so the final value names the write); no value there that was never
    written;
  - every node restarted after every cut (a node that refuses its directory, or exits by
    itself, is a failure, with its log);
  - no two nodes applied different entries at one index: every node writes each apply
    (index, hash chain, command) and each snapshot restore (index, chain) to a file outside the
    shim's root; over all nodes and all their incarnations, one index has one command and one
    chain; and the final states and chains of all nodes are equal.

Exit status: 0 pass, 1 a check failed, 3 the campaign could not run. docs/reliability.md
("Power loss") records how it runs in `make test` and the results of longer runs.
"""

import argparse
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))  # tests/free_ports.py
import lazyfs  # noqa: E402
from free_ports import free_ports  # noqa: E402  (below the ephemeral range: see there)

STORES = ("disk", "python", "lua")
KINDS = ("one", "leader", "two", "all")


def log(msg: str) -> None:
    print(f"[powercut {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@dataclasses.dataclass
class Config:
    store: str = "disk"
    duration: float = 15.0          # seconds of writes and cuts
    seed: int = 1
    nodes: int = 3
    writers: int = 3
    fsync: bool = True              # False: the negative control
    kinds: Tuple[str, ...] = KINDS  # chosen with the weights below
    weights: Tuple[float, ...] = (0.35, 0.3, 0.25, 0.1)
    modes: Tuple[str, ...] = lazyfs.MODES
    gap: Tuple[float, float] = (0.3, 1.5)    # between cuts
    down: Tuple[float, float] = (0.1, 0.6)   # how long a cut node stays off
    snapshot_entries: int = 100
    sync_delay_us: int = 1500       # each sync slower (the shim): more cuts find unsynced data
    # The run goes on past duration until it made min_cuts cuts and undid min_undone journal
    # records (cuts that found nothing volatile test little), up to max_factor * duration.
    min_cuts: int = 0
    min_undone: int = 0
    max_factor: float = 3.0
    request_timeout: float = 5.0
    recovery_timeout: float = 30.0
    out: Optional[str] = None


class Down(Exception):
    """The node's process is gone (cut): a request's outcome is unknown."""


class Server:
    """One node: its directories, its current process and control directory."""

    def __init__(self, cfg: Config, work: str, sid: int, peers: Dict[int, str]):
        self.cfg, self.sid, self.peers = cfg, sid, peers
        base = os.path.join(work, f"n{sid}")
        self.root = os.path.join(base, "root")      # everything under it may be lost
        self.state = os.path.join(base, "lazyfs")   # the shim's journal and backups
        self.data = os.path.join(self.root, "data")
        self.applied = os.path.join(base, "applied.log")
        self.log_path = os.path.join(base, "node.log")
        self.ctl_base = os.path.join(base, "ctl")
        for d in (self.root, self.ctl_base):
            os.makedirs(d, exist_ok=True)
        # The root stands for a mounted disk: made durable here, outside the model.
        fd = os.open(base, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        self.proc: Optional[subprocess.Popen] = None
        self.ctl = ""
        self.incarnation = 0
        self.next_req = 1
        self.lock = threading.Lock()

    def command(self) -> Tuple[List[str], Dict[str, str]]:
        peers = ",".join(f"{i}={a}" for i, a in sorted(self.peers.items()))
        e = lazyfs.env(self.root, self.state)
        e["CRAFT_LAZYFS_SYNC_DELAY_US"] = str(self.cfg.sync_delay_us)
        if self.cfg.store == "lua":
            v = "5.4"
            tree = os.path.join(ROOT, "lua_modules")
            durable = os.path.join(os.path.dirname(lazyfs.shim_path()), "lua")
            e["LUA_PATH"] = (f"{tree}/share/lua/{v}/?.lua;{tree}/share/lua/{v}/?/init.lua;"
                             f"{HERE}/?.lua;;")
            e["LUA_CPATH"] = f"{tree}/lib/lua/{v}/?.so;{durable}/?.so;;"
            e["LUA_PATH_5_4"], e["LUA_CPATH_5_4"] = e["LUA_PATH"], e["LUA_CPATH"]
            cmd = ["lua5.4", os.path.join(HERE, "node.lua"), str(self.sid), peers, self.data,
                   self.ctl, self.applied, f"snapshot_entries={self.cfg.snapshot_entries}"]
            if not self.cfg.fsync:
                cmd.append("sync=false")
        else:
            cmd = [sys.executable, os.path.join(HERE, "node.py"), "--id", str(self.sid),
                   "--peers", peers, "--data", self.data, "--ctl", self.ctl,
                   "--applied", self.applied, "--store", self.cfg.store,
                   "--snapshot-entries", str(self.cfg.snapshot_entries)]
            if not self.cfg.fsync:
                cmd.append("--no-fsync")
        return cmd, e

    def start(self, wait: float = 20.0) -> bool:
        """Starts a new incarnation; True once it is ready, False if it exited."""
        with self.lock:
            self.incarnation += 1
            self.ctl = os.path.join(self.ctl_base, str(self.incarnation))
            os.makedirs(self.ctl)
            self.next_req = 1
            cmd, e = self.command()
            with open(self.log_path, "ab") as out:
                out.write(f"==== {time.strftime('%H:%M:%S')} incarnation {self.incarnation}\n"
                          .encode())
                out.flush()
                self.proc = subprocess.Popen(cmd, env=e, cwd=ROOT, stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
            proc, ctl = self.proc, self.ctl
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if os.path.exists(os.path.join(ctl, "ready")):
                return True
            time.sleep(0.01)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        with self.lock:
            proc, self.proc = self.proc, None
        if proc is not None:
            lazyfs.kill_group(proc)

    def request(self, line: str, timeout: float) -> Tuple[bool, str]:
        """(True, value) or (False, error message); raises Down if the process went away."""
        with self.lock:
            proc, ctl = self.proc, self.ctl
            if proc is None or proc.poll() is not None:
                raise Down(f"node {self.sid} is down")
            n = self.next_req
            self.next_req += 1
            path = os.path.join(ctl, f"req.{n}")
            with open(path + ".tmp", "w") as f:
                f.write(line)
            os.rename(path + ".tmp", path)
        resp = os.path.join(ctl, f"resp.{n}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(resp) as f:
                    text = f.read()
                status, _, value = text.partition("\n")
                return status == "ok", value
            except FileNotFoundError:
                pass
            if proc.poll() is not None or self.proc is not proc:
                raise Down(f"node {self.sid} went down")
            time.sleep(0.002)
        raise Down(f"node {self.sid}: no answer to {line.split(' ')[0]} in {timeout} s")

    def tail(self, n: int = 3000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""


class Campaign:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.work = tempfile.mkdtemp(prefix=f"powercut-{cfg.store}-")
        ports = free_ports(cfg.nodes)
        self.peers = {i + 1: f"127.0.0.1:{p}" for i, p in enumerate(ports)}
        self.servers = {i: Server(cfg, self.work, i, self.peers) for i in self.peers}
        self.acked: Dict[str, str] = {}
        self.attempted: Dict[str, str] = {}
        self.counts = {"ok": 0, "unknown": 0}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.problems: List[str] = []
        self.cuts: List[Dict[str, object]] = []
        self.t0 = time.monotonic()

    # -- helpers -----------------------------------------------------------------------------
    def problem(self, msg: str) -> None:
        log("PROBLEM: " + msg)
        self.problems.append(msg)

    def status(self, s: Server) -> Optional[Dict[str, object]]:
        try:
            ok, v = s.request("status", 2.0)
        except Down:
            return None
        if not ok:
            return None
        role, leader, term, applied, commit = v.split()
        return {"role": role, "leader": int(leader), "term": int(term),
                "applied": int(applied), "commit": int(commit)}

    def leader(self) -> Optional[int]:
        best = (-1, None)
        for sid, s in self.servers.items():
            st = self.status(s)
            if st and st["role"] == "leader" and st["term"] > best[0]:
                best = (st["term"], sid)
        return best[1]

    def wait_leader(self, timeout: float) -> Optional[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.problems:
            lead = self.leader()
            if lead is not None:
                return lead
            time.sleep(0.05)
        return None

    # -- writers -----------------------------------------------------------------------------
    def writer(self, wid: int) -> None:
        rng = random.Random(self.cfg.seed * 1000 + wid)
        seq = 0
        while not self.stop.is_set():
            up = [s for s in self.servers.values() if s.alive()]
            if not up:
                time.sleep(0.01)
                continue
            s = rng.choice(up)
            seq += 1
            # Values of up to 600 bytes: a batch of entries spans sectors, and a torn write
            # can keep some of them and lose others.
            key = f"w{wid}k{seq}"
            value = f"v{wid}.{seq}.{rng.randrange(1 << 30)}." + "x" * rng.randrange(600)
            with self.lock:
                self.attempted[key] = value
            try:
                ok, _ = s.request(f"set {key} {value}", self.cfg.request_timeout)
            except Down:
                ok = False
            with self.lock:
                if ok:
                    self.acked[key] = value
                    self.counts["ok"] += 1
                else:
                    # Timeouts, lost leaders, a node cut mid-request: it may or may not be
                    # applied; only acknowledged writes are owed.
                    self.counts["unknown"] += 1
            if not ok:
                time.sleep(0.02)

    # -- cuts --------------------------------------------------------------------------------
    def pick(self) -> Tuple[str, List[int]]:
        kind = self.rng.choices(self.cfg.kinds, self.cfg.weights)[0]
        ids = sorted(self.servers)
        if kind == "leader":
            lead = self.leader()
            return kind, [lead if lead is not None else self.rng.choice(ids)]
        if kind == "two":
            return kind, sorted(self.rng.sample(ids, 2))
        if kind == "all":
            return kind, ids
        return kind, [self.rng.choice(ids)]

    def cut(self) -> None:
        kind, victims = self.pick()
        modes = {v: self.rng.choice(self.cfg.modes) for v in victims}
        t = time.monotonic() - self.t0
        for v in victims:                       # at once: every victim dies first
            self.servers[v].kill()
        done = {}
        for v in victims:
            s = self.servers[v]
            done[v] = lazyfs.power_cut(s.state, s.root, modes[v], self.rng)
        desc = ", ".join(f"n{v} {modes[v]}: undid {done[v]['undone']} of {done[v]['volatile']}"
                         f" volatile records{' (torn)' if done[v]['torn'] else ''}"
                         for v in victims)
        log(f"t={t:.1f}s cut {kind}: {desc}")
        time.sleep(self.rng.uniform(*self.cfg.down))
        for v in victims:
            s = self.servers[v]
            if not s.start():
                self.problem(f"node {v} did not start again after the power cut at t={t:.1f}s "
                             f"({modes[v]}): {s.tail()}")
        self.cuts.append({"t": round(t, 2), "kind": kind,
                          "nodes": {str(v): {"mode": modes[v], "undone": done[v]["undone"],
                                             "volatile": done[v]["volatile"],
                                             "torn": done[v]["torn"],
                                             "lost": done[v]["lost"][-8:]} for v in victims}})

    def undone(self) -> int:
        return sum(int(n["undone"]) for c in self.cuts for n in c["nodes"].values())

    def check_alive(self) -> None:
        for sid, s in self.servers.items():
            if s.proc is not None and s.proc.poll() is not None:
                self.problem(f"node {sid} exited by itself (status {s.proc.returncode}): "
                             f"{s.tail()}")
                s.proc = None
                if not s.start():
                    self.problem(f"node {sid} did not start again: {s.tail()}")

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> Dict[str, object]:
        cfg = self.cfg
        log(f"store {cfg.store}, seed {cfg.seed}, {cfg.duration:.0f} s, fsync "
            f"{'on' if cfg.fsync else 'OFF (negative control)'}, work {self.work}")
        for sid, s in self.servers.items():
            if not s.start():
                self.problem(f"node {sid} did not start: {s.tail()}")
        if self.problems:
            return self.finish()
        if self.wait_leader(cfg.recovery_timeout) is None:
            self.problem("no leader within the recovery timeout at the start")
            return self.finish()
        writers = [threading.Thread(target=self.writer, args=(w,), daemon=True)
                   for w in range(cfg.writers)]
        for w in writers:
            w.start()
        end = self.t0 + cfg.duration
        cap = self.t0 + cfg.duration * cfg.max_factor

        def more() -> bool:
            now = time.monotonic()
            if self.problems or now >= cap:
                return False
            return now < end or len(self.cuts) < cfg.min_cuts or self.undone() < cfg.min_undone

        while more():
            time.sleep(self.rng.uniform(*cfg.gap))
            self.check_alive()
            if not more():
                break
            self.cut()
            if self.wait_leader(cfg.recovery_timeout) is None and not self.problems:
                self.problem("no leader within the recovery timeout after a cut")
        self.stop.set()
        for w in writers:
            w.join(cfg.request_timeout + 5)
        self.check_alive()
        return self.finish()

    # -- the checks --------------------------------------------------------------------------
    def converge(self) -> Optional[Dict[int, Tuple[int, str]]]:
        """A last write through the cluster, then every node's (applied, chain) once they all
        agree."""
        deadline = time.monotonic() + self.cfg.recovery_timeout
        token = f"end{self.rng.randrange(1 << 30)}"
        written = False
        while time.monotonic() < deadline and not written:
            for s in self.servers.values():
                try:
                    ok, _ = s.request(f"set __end__ {token}", self.cfg.request_timeout)
                except Down:
                    ok = False
                if ok:
                    written = True
                    break
            if not written:
                time.sleep(0.2)
        if not written:
            self.problem("the final write never succeeded")
            return None
        digests: Dict[int, Tuple[int, str]] = {}
        while time.monotonic() < deadline:
            digests = {}
            for sid, s in self.servers.items():
                try:
                    ok, v = s.request("digest", 2.0)
                except Down:
                    ok = False
                if ok:
                    a, c = v.split()
                    digests[sid] = (int(a), c)
            if len(digests) == len(self.servers) and len(set(digests.values())) == 1:
                return digests
            time.sleep(0.1)
        self.problem(f"the nodes did not converge: {digests}")
        return None

    def check_applied_logs(self) -> Dict[str, int]:
        """Over every node and every incarnation: one command and one chain per index."""
        seen: Dict[int, Tuple[str, str, int]] = {}
        restores: List[Tuple[int, str, int]] = []
        applies = 0
        conflicts = 0

        def short(cmd: str) -> str:
            return cmd if len(cmd) <= 40 else cmd[:40] + "..."
        for sid, s in self.servers.items():
            try:
                f = open(s.applied, encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            with f:
                for line in f:
                    if not line.endswith("\n"):
                        continue  # the node was killed in the middle of this line
                    parts = line.rstrip("\n").split(" ", 3)
                    if parts[0] == "a" and len(parts) == 4:
                        applies += 1
                        i, chain, cmd = int(parts[1]), parts[2], parts[3]
                        if i in seen and seen[i][:2] != (chain, cmd):
                            conflicts += 1
                            if conflicts <= 5:
                                self.problem(f"index {i}: node {seen[i][2]} applied "
                                             f"{short(seen[i][1])!r} (chain {seen[i][0]}), "
                                             f"node {sid} applied {short(cmd)!r} (chain {chain})")
                        seen.setdefault(i, (chain, cmd, sid))
                    elif parts[0] == "r" and len(parts) == 3:
                        restores.append((int(parts[1]), parts[2], sid))
        for i, chain, sid in restores:
            if i in seen and seen[i][0] != chain:
                conflicts += 1
                if conflicts <= 5:
                    self.problem(f"node {sid} restored a snapshot at index {i} with chain "
                                 f"{chain}; node {seen[i][2]} had applied chain {seen[i][0]} "
                                 f"there")
        if conflicts > 5:
            self.problem(f"{conflicts} indexes applied differently in all")
        return {"applies": applies, "indexes": len(seen), "restores": len(restores),
                "conflicts": conflicts}

    def finish(self) -> Dict[str, object]:
        self.stop.set()
        digests = self.converge() if not self.problems else None
        lost: List[str] = []
        states: Dict[int, Dict[str, str]] = {}
        if digests is not None:
            for sid, s in self.servers.items():
                ok, text = False, ""
                for _ in range(20):
                    try:
                        ok, text = s.request("state", self.cfg.request_timeout)
                    except Down as e:
                        ok, text = False, str(e)
                    if ok:
                        break
                    time.sleep(0.2)
                if not ok:
                    self.problem(f"node {sid}: no final state: {text}")
                    continue
                states[sid] = dict(line.split("=", 1) for line in text.splitlines() if line)
            if len({json.dumps(v, sort_keys=True) for v in states.values()}) > 1:
                self.problem("the nodes' final states differ")
            for sid, st in states.items():
                for k, v in self.acked.items():
                    if st.get(k) != v:
                        lost.append(f"{k} on node {sid}")
                strange = [k for k, v in st.items()
                           if k != "__end__" and self.attempted.get(k) != v]
                if strange:
                    self.problem(f"node {sid} holds values nobody wrote, for {len(strange)} "
                                 f"keys: {strange[:5]}")
            if lost:
                self.problem(f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}")
        applied = self.check_applied_logs()
        for s in self.servers.values():
            s.kill()
        undone = self.undone()
        summary = {
            "status": "fail" if self.problems else "pass",
            "store": self.cfg.store, "seed": self.cfg.seed, "fsync": self.cfg.fsync,
            "seconds": round(time.monotonic() - self.t0, 1),
            "cuts": len(self.cuts),
            "cuts_by_kind": {k: sum(1 for c in self.cuts if c["kind"] == k) for k in KINDS},
            "node_cuts_by_mode": {m: sum(1 for c in self.cuts for n in c["nodes"].values()
                                         if n["mode"] == m) for m in lazyfs.MODES},
            "torn_writes": sum(1 for c in self.cuts for n in c["nodes"].values() if n["torn"]),
            "records_undone": undone,
            "writes_acknowledged": self.counts["ok"], "writes_unknown": self.counts["unknown"],
            "lost": len(lost), "final": {str(k): v for k, v in (digests or {}).items()},
            "applied_logs": applied, "problems": self.problems,
        }
        if self.cfg.out:
            os.makedirs(self.cfg.out, exist_ok=True)
            with open(os.path.join(self.cfg.out, "summary.json"), "w") as f:
                json.dump({**summary, "cut_list": self.cuts}, f, indent=1)
            for sid, s in self.servers.items():
                for name in ("node.log", "applied.log"):
                    src = os.path.join(os.path.dirname(s.applied), name)
                    if os.path.exists(src):
                        shutil.copy(src, os.path.join(self.cfg.out, f"n{sid}-{name}"))
        if not self.problems:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            log(f"work directory kept for inspection: {self.work}")
        log(f"{summary['status'].upper()}: {summary['cuts']} cuts {summary['cuts_by_kind']}, "
            f"{undone} records undone, {summary['torn_writes']} torn writes, "
            f"{self.counts['ok']} writes acknowledged ({self.counts['unknown']} unknown), "
            f"{len(lost)} lost, applied logs {applied}, final {summary['final']}")
        return summary


def run(cfg: Config) -> Dict[str, object]:
    c = Campaign(cfg)
    try:
        return c.run()
    finally:
        for s in c.servers.values():
            try:
                s.kill()
            except Exception:
                pass


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", choices=STORES, default="disk")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of writes and cuts")
    p.add_argument("--seed", type=int, default=None, help="default: random, printed")
    p.add_argument("--writers", type=int, default=3)
    p.add_argument("--kinds", default=",".join(KINDS),
                   help=f"cut kinds, a subset of {','.join(KINDS)}")
    p.add_argument("--modes", default=",".join(lazyfs.MODES),
                   help=f"what a cut loses, a subset of {','.join(lazyfs.MODES)}")
    p.add_argument("--snapshot-entries", type=int, default=100)
    p.add_argument("--sync-delay-us", type=int, default=Config.sync_delay_us,
                   help="every sync takes this much longer (a slower disk: cuts find more "
                        "unsynced data)")
    p.add_argument("--no-fsync", action="store_true", help="the negative control: must fail")
    p.add_argument("--out", help="write summary.json and the nodes' logs there")
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else random.randrange(1 << 30)
    kinds = tuple(k for k in a.kinds.split(",") if k)
    weights = tuple(Config.weights[KINDS.index(k)] for k in kinds)
    cfg = Config(store=a.store, duration=a.duration, seed=seed, writers=a.writers,
                 kinds=kinds, weights=weights, modes=tuple(a.modes.split(",")),
                 snapshot_entries=a.snapshot_entries, sync_delay_us=a.sync_delay_us,
                 fsync=not a.no_fsync, out=a.out)
    try:
        s = run(cfg)
    except Exception as e:
        log(f"could not run: {type(e).__name__}: {e}")
        return 3
    print(json.dumps({k: v for k, v in s.items()}, indent=1))
    return 0 if s["status"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
