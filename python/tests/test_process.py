"""A 3-node cluster in 3 processes on 127.0.0.1: replication, kill -9 of the leader, a new
leader, writes continue, the killed node restarts from disk and nothing acknowledged is lost."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import free_ports

HERE = os.path.dirname(os.path.abspath(__file__))


class Proc:
    def __init__(self, node_id, data_dir, peers):
        env = dict(os.environ)
        # The child imports craft exactly as this process does (the installed package).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.p = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "node_proc.py"), str(node_id), data_dir,
             json.dumps(peers)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=env)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next(15) == "ready"

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.strip())

    def next(self, timeout=10):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no answer from the node process") from None

    def ask(self, line, timeout=10):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.next(timeout)

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def quit(self):
        if self.p.poll() is None:
            try:
                self.ask("quit", 1)
            except (AssertionError, BrokenPipeError, OSError):
                pass
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def leader_of(procs, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, p in procs.items():
            if p.ask("leader") == f"leader {i}":
                return i
        time.sleep(0.05)
    raise AssertionError("no leader")


def test_three_processes_survive_kill_9_of_the_leader(tmp_path):
    peers = {i: f"127.0.0.1:{p}" for i, p in zip((1, 2, 3), free_ports(3))}
    procs = {i: Proc(i, str(tmp_path / f"n{i}"), peers) for i in peers}
    try:
        acked = {}
        for k in range(15):
            i = 1 + k % 3
            r = procs[i].ask(f"apply a{k} {k}")
            assert r.startswith("ok"), r
            acked[f"a{k}"] = str(k)
        old = leader_of(procs)
        procs.pop(old).kill()
        new = leader_of(procs)
        assert new != old
        for k in range(15):
            i = list(procs)[k % 2]
            r = procs[i].ask(f"apply b{k} {k}", timeout=15)
            assert r.startswith("ok"), r
            acked[f"b{k}"] = str(k)
        procs[old] = Proc(old, str(tmp_path / f"n{old}"), peers)
        for i, p in procs.items():
            deadline = time.monotonic() + 10
            while True:
                r = p.ask("get")
                assert r.startswith("data"), r
                if json.loads(r[5:]) == acked or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert json.loads(r[5:]) == acked, f"node {i}"
    finally:
        for p in procs.values():
            p.quit()
