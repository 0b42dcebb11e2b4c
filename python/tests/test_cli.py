"""The `craft` command line (issue 15) against real processes: examples/python/kv.py servers on
127.0.0.1, each a craft node in a process of its own, authenticated by a cluster secret (TLS
in one test). The tool talks to them only over the network; every exit status a script may
rely on (0 done, 1 refused, 2 usage, 3 unreachable, 4 unknown outcome, 5 no leader) is
produced here by the situation it names."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import craft
from craft import codec

from conftest import free_ports, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KV = os.path.join(ROOT, "examples", "python", "kv.py")
CRAFT = os.path.join(os.path.dirname(sys.executable), "craft")


def run(*args, timeout=60, check=None):
    """Runs the installed `craft` console script; returns (exit status, stdout, stderr)."""
    p = subprocess.run([CRAFT, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p.returncode, p.stdout, p.stderr


class KvCluster:
    """kv.py servers: ids 1..n bootstrapped together, more started with --join."""

    def __init__(self, tmp, n=3, extra=1, security=("--secret-file",)):
        self.tmp = tmp
        ports = free_ports(2 * (n + extra))
        self.raft = {i: f"127.0.0.1:{ports[i - 1]}" for i in range(1, n + extra + 1)}
        self.client_ports = {i: ports[n + extra + i - 1] for i in range(1, n + extra + 1)}
        self.n = n
        self.secret = str(tmp / "cluster.secret")
        craft.generate_secret(self.secret)
        self.security = list(security)
        self.procs = {}

    def sec_args(self):
        if self.security == ["--secret-file"]:
            return ["--secret-file", self.secret]
        return self.security

    def peers(self):
        return ",".join(f"{i}={self.raft[i]}" for i in range(1, self.n + 1))

    def start(self, i, join=False, extra_args=()):
        args = [sys.executable, KV, "serve", str(i), "--data", str(self.tmp),
                "--client-base", str(self.client_ports[i] - i), "--wait-leader", "0",
                *self.server_security(i), *extra_args]
        args += ["--join", "--address", self.raft[i]] if join else ["--peers", self.peers()]
        log = open(self.tmp / f"kv{i}.log", "a")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def server_security(self, i):
        return self.sec_args() if self.security == ["--secret-file"] else self.security_for(i)

    def security_for(self, i):
        return []

    def start_all(self):
        for i in range(1, self.n + 1):
            self.start(i)

    def kill(self, i):
        p = self.procs.pop(i)
        p.send_signal(signal.SIGKILL)
        p.wait(30)

    def close(self):
        for i in list(self.procs):
            self.kill(i)

    def addresses(self, ids=None):
        return [self.raft[i] for i in (ids or range(1, self.n + 1))]

    def status_json(self, ids=None):
        code, out, err = run("status", "--json", *self.sec_args(), *self.addresses(ids))
        return code, json.loads(out) if out else None, err

    def wait_healthy(self, ids=None, timeout=30):
        def healthy():
            code, snap, _ = self.status_json(ids)
            return code == 0 and snap["leader"] is not None
        wait_until(healthy, timeout, "a healthy cluster")


@pytest.fixture
def kv(tmp_path):
    c = KvCluster(tmp_path)
    c.start_all()
    try:
        c.wait_healthy()
        yield c
    finally:
        c.close()


def test_the_console_script_and_python_m_craft():
    assert os.access(CRAFT, os.X_OK), f"pip installed no {CRAFT}"
    code, out, _ = run("--help", check=0)
    assert "status" in out and "exit status" in out
    p = subprocess.run([sys.executable, "-m", "craft", "status", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and "--watch" in p.stdout and "--secret-file" in p.stdout
    # No command, a bad id, a bad address, options that do not go together: usage (2).
    assert run()[0] == 2
    assert run("add", "x", "127.0.0.1:1", "-s", "127.0.0.1:1")[0] == 2
    code, _, err = run("status", "nowhere")
    assert code == 2 and "not an address" in err
    code, _, err = run("remove", "4")  # which cluster?
    assert code == 2 and "CRAFT_SERVERS" in err
    code, _, err = run("status", "127.0.0.1:1", "--secret-file", "/nonexistent/secret")
    assert code == 2 and "cannot read" in err
    code, _, err = run("status", "127.0.0.1:1", "--tls-cert", "c.pem")
    assert code == 2 and "together" in err


def test_status_lines_and_json(kv):
    code, out, err = run("status", *kv.sec_args(), *kv.addresses(), check=0)
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["ID", "ADDRESS", "ROLE", "TERM"]
    rows = {int(l.split()[0]): l.split() for l in lines[1:4]}
    assert sorted(rows) == [1, 2, 3]
    roles = sorted(r[2] for r in rows.values())
    assert roles == ["follower", "follower", "leader"]
    for r in rows.values():
        assert r[10] == "1,2,3" and r[11] == "-" and r[9] == "yes"
    assert any(l.startswith("followers of leader") for l in lines)
    followers = lines[lines.index(next(l for l in lines if l.startswith("followers"))) + 2:]
    assert len(followers) == 2
    for f in followers:
        assert f.split()[8] == "replicate" and f.split()[9] == "yes"

    code, snap, _ = kv.status_json()
    assert code == 0
    statuses = [n["status"] for n in snap["nodes"]]
    leader = next(s for s in statuses if s["role"] == "leader")
    assert snap["leader"]["id"] == leader["id"] and snap["leader"]["has_quorum"]
    for s in statuses:
        assert s["leader"] == leader["id"] and s["term"] == leader["term"]
        assert s["voters"] == [1, 2, 3] and s["learners"] == [] and s["conf_committed"]
        assert s["has_quorum"] and s["uptime_ms"] > 0 and s["address"] in kv.addresses()
    for p in snap["leader"]["followers"]:
        assert p["state"] == "replicate" and p["lag"] == 0 and p["next"] == p["match"] + 1
        assert 0 <= p["last_contact_ms"] < 2000

    # Asked only a follower: the followers' view is fetched from the leader it names.
    follower = next(s for s in statuses if s["role"] == "follower")
    code, only, _ = kv.status_json([follower["id"]])
    assert code == 0 and only["leader"]["fetched"] and only["leader"]["id"] == leader["id"]
    assert len(only["leader"]["followers"]) == 2

    # --watch refreshes; --count bounds it.
    code, out, _ = run("status", "--watch", "0.2", "--count", "2", *kv.sec_args(),
                       *kv.addresses(), check=0)
    assert out.count("followers of leader") == 2


def test_status_names_what_is_wrong(kv):
    # A node down: the others still answer; exit 3 names it.
    kv.kill(3)
    code, out, err = run("status", "--timeout", "2", *kv.sec_args(), *kv.addresses())
    assert code == 3
    assert any(l.split()[:3] == ["-", kv.raft[3], "unreachable"] for l in out.splitlines())
    assert f"{kv.raft[3]}: status: could not reach" in out
    assert "Connection refused" in out
    # The wrong secret: the TLS handshake fails, and the tool says it.
    other = kv.tmp / "other.secret"
    craft.generate_secret(str(other))
    code, out, _ = run("status", "--timeout", "2", "--secret-file", other, kv.raft[1])
    assert code == 3 and "TLS handshake failed" in out
    # The leader's address only: the followers' view comes from there too.
    code, snap, _ = kv.status_json([1, 2])
    leader = snap["leader"]["id"]
    # No majority: no leader with a quorum (exit 5), what is left still answers. The leader
    # survives (node 3 is down already; the other follower goes), so it must notice by itself.
    kv.kill(2 if leader != 2 else 1)
    survivor = leader

    def lost():
        code, snap, _ = kv.status_json([survivor])
        return code == 5 and not snap["nodes"][0]["status"]["has_quorum"]
    wait_until(lost, 20, "the survivor to notice it has no quorum")


def test_membership_changes_wait_and_refusals_say_why(kv):
    sec = kv.sec_args()
    servers = ["-s", ",".join(kv.addresses())]
    kv.start(4, join=True)
    code, out, _ = run("add", "4", kv.raft[4], "--no-auto-promote", *servers, *sec, check=0)
    assert "added server 4" in out and "configuration entry" in out
    code, snap, _ = kv.status_json()
    assert all(n["status"]["learners"] == [4] for n in snap["nodes"])  # applied everywhere
    code, _, err = run("add", "4", kv.raft[4], *servers, *sec)
    assert code == 1 and "already a member" in err and "4 (learner at" in err
    # promote waits until the learner has caught up.
    code, out, _ = run("promote", "4", *servers, *sec, check=0)
    code, snap, _ = kv.status_json()
    assert snap["nodes"][0]["status"]["voters"] == [1, 2, 3, 4]
    code, out, _ = run("demote", "4", "--json", *servers, *sec, check=0)
    assert json.loads(out)["index"] > 0
    code, _, err = run("demote", "4", *servers, *sec)
    assert code == 1 and "server 4 is already a learner" in err
    code, _, err = run("remove", "9", *servers, *sec)
    assert code == 1 and "not a member" in err
    code, _, err = run("transfer", "4", *servers, *sec)
    assert code == 1 and "server 4 is not a voter" in err
    run("remove", "4", *servers, *sec, check=0)
    code, snap, _ = kv.status_json()
    assert snap["nodes"][0]["status"]["learners"] == []
    # Transfer to a chosen voter, through a follower: it leads afterwards.
    old = snap["leader"]["id"]
    target = 3 if old != 3 else 2
    run("transfer", str(target), "-s", kv.raft[old], *sec, check=0)
    wait_until(lambda: kv.status_json()[1]["leader"]["id"] == target, 10, "the new leader")
    # Handing leadership to the server that already leads changes nothing and is no error
    # (a script that makes sure server N leads can run twice).
    code, out, _ = run("transfer", str(target), *servers, *sec, check=0)
    assert f"server {target} already leads" in out
    assert kv.status_json()[1]["leader"]["id"] == target
    # $CRAFT_SERVERS stands for -s.
    env = dict(os.environ, CRAFT_SERVERS=",".join(kv.addresses()), CRAFT_SECRET_FILE=kv.secret)
    p = subprocess.run([CRAFT, "transfer"], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr


def test_no_leader_and_nowhere_to_send(kv):
    sec = kv.sec_args()
    code, _, err = run("remove", "2", "-s", "127.0.0.1:1", "--timeout", "1", *sec)
    assert code == 3 and "nothing was sent" in err
    # The leader and one follower die: the survivor is a follower that knows no live leader.
    # (Were the survivor the leader, it would take the change and never commit it: exit 4.)
    leader = kv.status_json()[1]["leader"]["id"]
    survivor = next(i for i in (1, 2, 3) if i != leader)
    for i in (1, 2, 3):
        if i != survivor:
            kv.kill(i)
    code, _, err = run("remove", str(survivor), "-s", kv.raft[survivor], "--timeout", "2", *sec)
    assert code == 5 and "no leader" in err and "nothing was done" in err, (code, err)


def test_a_leader_that_lost_its_majority_cannot_say(kv):
    # The change reaches a leader whose followers just died: appended, never committed, and
    # perhaps committed later by a new leader once they return. Neither "done" nor "refused".
    sec = kv.sec_args()
    leader = kv.status_json()[1]["leader"]["id"]
    for i in (1, 2, 3):
        if i != leader:
            kv.kill(i)
    other = 1 if leader != 1 else 2
    code, _, err = run("remove", str(other), "-s", kv.raft[leader], "--timeout", "2", *sec)
    assert code in (4, 5), (code, err)
    if code == 4:
        assert "unknown outcome" in err, err


def test_snapshot_metrics_and_dump(kv):
    sec = kv.sec_args()
    for k in range(5):
        with socket.create_connection(("127.0.0.1", kv.client_ports[1]), timeout=10) as s:
            s.sendall(f"set key{k} value{k}\n".encode())
            assert s.makefile().readline().strip() == "OK"
    code, out, _ = run("snapshot", "--json", kv.raft[2], *sec, check=0)
    index = json.loads(out)["index"]
    assert index >= 6
    code, snap, _ = kv.status_json([2])
    s = snap["nodes"][0]["status"]
    assert s["snapshot_index"] == index and s["snapshot_size"] > 0
    code, out, _ = run("metrics", kv.raft[2], *sec, check=0)
    assert "craft_snapshots_taken_total 1" in out.splitlines()
    # The dump of a data directory: offline, the commands decoded through their session
    # envelopes; craft-dump's own exit status.
    code, out, err = run("dump", kv.tmp / "kv2", "--decode", "msgpack", check=0)
    assert 'session client=' in out and '["set", "key4", "value4"]' in out, out
    assert "config: servers: 1=" in out and "result: ok" in out
    code, out, _ = run("dump", kv.tmp / "kv2", "--entries", check=0)
    assert any(l.startswith("entry ") and " command " in l for l in out.splitlines())
    code, out, _ = run("dump", kv.tmp / "kv2", "--decode", "nonsense")
    assert code == 2
    code, _, _ = run("dump", kv.tmp / "nowhere")
    assert code == 2


def fake_server(behaviour):
    """A server that completes craft's handshake (plaintext) and then, for every request,
    does behaviour(conn): never answers, or closes. Returns (address, stop)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    stop = threading.Event()

    def frame(values):
        body = codec.dumps(values)
        return struct.pack(">I", len(body)) + body

    def serve():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            with conn:
                conn.recv(4096)  # the client's handshake
                conn.sendall(frame([1, 64, 1, 0, 0, 0, 0, "127.0.0.1:1"]))
                conn.recv(4096)  # its request
                behaviour(conn)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return "127.0.0.1:%d" % lsock.getsockname()[1], lambda: (stop.set(), t.join(5),
                                                             lsock.close())


def test_unknown_outcome_is_its_own_exit_status():
    # The request reached a server that never answered: it may or may not have happened.
    address, stop = fake_server(lambda conn: time.sleep(3))
    try:
        code, _, err = run("remove", "2", "-s", address, "--timeout", "1")
        assert code == 4 and "unknown outcome" in err and "check the status" in err
    finally:
        stop()


def test_mutual_tls(tmp_path):
    certs = tmp_path / "certs"
    subprocess.run(["bash", os.path.join(ROOT, "tests", "tls", "make-certs.sh"), str(certs),
                    "1", "2", "3"], check=True)
    client = ["--tls-cert", certs / "client.pem", "--tls-key", certs / "client.key",
              "--tls-ca", certs / "ca.pem"]

    class TlsCluster(KvCluster):
        def security_for(self, i):
            return ["--tls-cert", str(certs / f"server-{i}.pem"),
                    "--tls-key", str(certs / f"server-{i}.key"), "--tls-ca", str(certs / "ca.pem")]

    c = TlsCluster(tmp_path, extra=0, security=[str(x) for x in client])
    c.start_all()
    try:
        c.wait_healthy()
        code, out, _ = run("status", *client, *c.addresses(), check=0)
        assert "leader" in out
        # Without credentials, or with the secret of nobody: refused at the TLS handshake.
        code, out, _ = run("status", "--timeout", "2", c.raft[1])
        assert code == 3
    finally:
        c.close()
