"""Only members talk to members (issue 13), against real processes on 127.0.0.1.

Issue 13 found, on a cluster that trusted anyone who reached its port: leadership moved by a
forged TimeoutNow, one follower made to apply a command the others never saw, the cluster
stopped for good by one AppendEntries of term 2^64 - 1, a member's id accepted from another
address, 1,100 idle connections keeping real clients out, eight partial 60 MiB frames taking a
node to +427 MiB. Each is replayed here by wire_attacker.py, a process that speaks the wire
format from scratch: without credentials (TLS or a cluster secret) it is refused, and in
plaintext what can be refused is; the cluster goes on as if it had never come (same leader and
term, same state on every node, writes succeed). Then: TLS with a wrong CA, an expired
certificate, a certificate for another id; rotation of the secret and of the certificates under
write load without losing an acknowledged write; both modes and the limits from Python.

Certificates are made at test time by tests/tls/make-certs.sh (openssl); no key is committed.
"""

import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import craft
from conftest import KV, free_ports, wait_until
import wire_attacker as wa

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLUSTER_ID = 7
MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", os.path.join(ROOT, "tests", "tls", "make-certs.sh"), str(d),
                    "1", "2", "3", "4"], check=True)
    return d


def tls_spec(certs, name, ca="ca.pem", verify_id=True):
    return {"tls": {"cert": str(certs / f"{name}.pem"), "key": str(certs / f"{name}.key"),
                    "ca": str(certs / ca), "verify_id": verify_id}}


def client_tls(certs, name="client", ca="ca.pem"):
    return {"cert": str(certs / f"{name}.pem"), "key": str(certs / f"{name}.key"),
            "ca": str(certs / ca)}


class Proc:
    """A node process (secure_proc.py) and its log file."""

    def __init__(self, node_id, data_dir, peers, spec, log, limits=None):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.id = node_id
        self.log = log
        args = [sys.executable, os.path.join(HERE, "secure_proc.py"), str(node_id), data_dir,
                json.dumps(peers), json.dumps(spec), log]
        if limits is not None:
            args.append(json.dumps(limits))
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=env)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next(20) == "ready", open(log).read()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.strip())

    def next(self, timeout=15):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer from node {self.id}") from None

    def ask(self, line, timeout=15):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.next(timeout)

    def status(self):
        answer = self.ask("status")
        assert answer.startswith("status "), answer
        return json.loads(answer[7:])

    def data(self, how="local"):
        answer = self.ask(how)
        assert answer.startswith("data "), answer
        return json.loads(answer[5:])

    def logs(self):
        with open(self.log) as f:
            return f.read()

    def quit(self):
        if self.p.poll() is None:
            try:
                self.ask("quit", 2)
            except (AssertionError, BrokenPipeError, OSError):
                pass
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.send_signal(signal.SIGKILL)
                self.p.wait(10)


class Cluster:
    def __init__(self, tmp_path, spec_of, limits=None):
        self.peers = {i: f"127.0.0.1:{p}" for i, p in zip((1, 2, 3), free_ports(3))}
        self.procs = {}
        try:
            for i in self.peers:
                self.procs[i] = Proc(i, str(tmp_path / f"n{i}"), self.peers, spec_of(i),
                                     str(tmp_path / f"n{i}.log"), limits)
        except BaseException:
            self.close()
            raise

    def close(self):
        for p in self.procs.values():
            p.quit()

    def leader(self, timeout=15):
        def find():
            for i, p in self.procs.items():
                if p.ask("leader") == f"leader {i}":
                    return i
            return None
        return wait_until(find, timeout, "a leader")

    def write(self, key, value, via=None):
        p = self.procs[via or self.leader()]
        answer = p.ask(f"apply {key} {value}")
        assert answer.startswith("ok"), answer

    def converged(self, timeout=15):
        """Every node's own state equals the leader's linearizable one: same replicas."""
        want = self.procs[self.leader()].data("get")

        def same():
            return all(p.data("local") == want for p in self.procs.values())
        wait_until(same, timeout, "every node to hold the same state")
        return want


@pytest.fixture
def make_cluster(tmp_path):
    made = []

    def make(spec_of, limits=None):
        c = Cluster(tmp_path, spec_of, limits)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def secret_specs(tmp_path):
    secret = tmp_path / "cluster.secret"
    if not secret.exists():
        craft.generate_secret(secret)
    return lambda i: {"secret": {"file": str(secret)}}


# ---- the attacks of issue 13 ----------------------------------------------------------------

def forge_everything(c, attacker_tls=None, source=None, announce=True):
    """Replays issue 13's forgeries at a follower, claiming to be its leader; returns whether
    each connection was closed on the attacker."""
    leader = c.leader()
    follower = next(i for i in c.procs if i != leader)
    target = c.peers[follower]
    st = c.procs[follower].status()
    term, last = st["term"], st["last_index"]
    me = c.peers[leader] if announce else ""
    attempts = [
        # Leadership moved by a forged TimeoutNow "from the leader".
        wa.handshake(leader, follower, CLUSTER_ID, me) + wa.timeout_now(leader, follower, term),
        # One follower made to apply a command the others never saw.
        wa.handshake(leader, follower, CLUSTER_ID, me) +
        wa.append_entries(leader, follower, term + 1, last, st["term"], last + 1,
                          [craft.codec.dumps(["pwned", "1"])]),
        # The cluster stopped for good by a term of 2^64 - 1.
        wa.handshake(leader, follower, CLUSTER_ID, me) +
        wa.append_entries(leader, follower, 2**64 - 1, 0, 0, 0, []),
    ]
    closed = []
    for data in attempts:
        try:
            s = wa.connect(target, source=source, tls=attacker_tls)
        except OSError:  # includes ssl.SSLError: refused during the TLS handshake
            closed.append(True)
            continue
        wa.send_quietly(s, data)
        closed.append(wa.closed_by_peer(s))
        s.close()
    return leader, follower, term, closed


def unaffected(c, leader, term):
    """Same leader, same term, no forged command anywhere, same state everywhere, writes go."""
    assert c.leader() == leader
    for p in c.procs.values():
        st = p.status()
        assert st["term"] == term, f"node {p.id} moved to term {st['term']}"
        assert "pwned" not in p.data("local")
    c.write("after", "attack")
    state = c.converged()
    assert state["after"] == "attack" and "pwned" not in state


@pytest.mark.parametrize("mode", ["secret", "tls"])
def test_forgeries_without_credentials_are_refused(mode, make_cluster, tmp_path, certs):
    specs = secret_specs(tmp_path) if mode == "secret" else \
        (lambda i: tls_spec(certs, f"server-{i}"))
    c = make_cluster(specs)
    c.write("before", "attack")
    c.converged()
    # In plaintext, from the member's own address; and with a certificate from another CA.
    leader, follower, term, closed = forge_everything(c)
    assert all(closed)
    if mode == "tls":
        _, _, _, closed = forge_everything(c, attacker_tls=client_tls(certs, "wrong-ca-server-1",
                                                                       "ca.pem"))
        assert all(closed)
    unaffected(c, leader, term)
    log = c.procs[follower].logs()
    assert "refused handshake" in log and "TLS handshake failed" in log
    assert "bad frame" not in log  # nothing was ever parsed as a craft frame


def test_forgeries_in_plaintext_are_refused_where_they_can_be(make_cluster):
    c = make_cluster(lambda i: None)
    c.write("before", "attack")
    c.converged()
    # A member's id from another address (127.0.0.2): refused at the handshake.
    leader, follower, term, closed = forge_everything(c, source="127.0.0.2")
    assert all(closed)
    log = c.procs[follower].logs()
    assert f"it claims to be server {leader}, configured at {c.peers[leader]}, from another " \
           f"address" in log
    # The same id from the right address but another listening address: refused.
    _, _, _, closed = forge_everything(c, announce=False)
    assert all(closed)
    assert f"server {leader} announces address" in c.procs[follower].logs()
    unaffected(c, leader, term)
    assert "PLAINTEXT" in log


def test_term_overflow_is_refused_at_decode(make_cluster):
    """A plaintext cluster lets a process on a member's own host through the handshake; the
    term 2^64 - 1 is still refused when the frame is decoded, with the reason logged, and a term
    absurdly far ahead (more than 2^32) too."""
    c = make_cluster(lambda i: None)
    c.write("before", "attack")
    leader = c.leader()
    follower = next(i for i in c.procs if i != leader)
    term = c.procs[follower].status()["term"]
    for forged_term, reason in ((2**64 - 1, "term beyond the term bound"),
                                (2**62, "term beyond the term bound"),
                                (term + 2**32 + 1, "term too far ahead")):
        # Not a member's id, so that the address check lets it in (a server joining).
        s = wa.connect(c.peers[follower])
        wa.send_quietly(s, wa.handshake(9, follower, CLUSTER_ID, "127.0.0.1:1") +
                        wa.append_entries(9, follower, forged_term, 0, 0, 0, []))
        assert wa.closed_by_peer(s)
        s.close()
        assert reason in c.procs[follower].logs()
    unaffected(c, leader, term)


# ---- resources ---------------------------------------------------------------------------------

def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"needs {need} file descriptors, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def served(address, tls=None, source=None, rid=1):
    """A real client: connects, handshakes and proposes; the node's answer, or None."""
    try:
        s = wa.connect(address, source=source, tls=tls)
        s.sendall(wa.handshake(0, 0, CLUSTER_ID) +
                  wa.request(rid, craft.codec.dumps([f"client-{rid}", "v"])))
        frames = wa.read_frames(s, timeout=2.0)
        s.close()
    except OSError:
        return None
    responses = [f for f in frames if f[1] == wa.RESPONSE]
    return responses[0] if responses else None


@pytest.mark.parametrize("mode", ["tls", "plaintext"])
def test_connection_flood_does_not_starve_clients(mode, make_cluster, certs):
    raise_fd_limit(4096)
    c = make_cluster((lambda i: tls_spec(certs, f"server-{i}")) if mode == "tls" else
                     (lambda i: None))
    leader = c.leader()
    target = c.peers[leader]
    tls = client_tls(certs) if mode == "tls" else None
    assert served(target, tls)[6] == 0
    # 1,100 connections from another address, held open: in TLS they never get through the
    # handshake; in plaintext they say they are clients.
    flood = []
    try:
        for _ in range(1100):
            try:
                s = wa.connect(target, source="127.0.0.2", timeout=2)
            except OSError:
                continue
            if mode == "plaintext":
                wa.send_quietly(s, wa.handshake(0, 0, CLUSTER_ID))
            flood.append(s)
        # Real clients are still served, and the cluster still commits.
        for rid in range(2, 12):
            answer = served(target, tls, rid=rid)
            assert answer is not None and answer[6] == 0, answer
        c.write("during", "flood")
    finally:
        for s in flood:
            s.close()
    log = c.procs[leader].logs()
    assert "without a handshake" in log or "too many client connections" in log
    c.converged()


def partial_frames(address, n, size, sent, source="127.0.0.2", tls=None):
    """n client connections, each announcing a Request of `size` bytes and sending `sent` of
    them; returns the sockets (some closed by the node)."""
    socks = []
    chunk = b"\0" * MiB
    for i in range(n):
        try:
            s = wa.connect(address, source=source, tls=tls)
        except OSError:
            continue
        head = wa.handshake(0, 0, CLUSTER_ID)
        body = craft.codec.dumps([1, wa.REQUEST, 0, 0, 0, i, 1, b""])[:-1]  # up to the payload
        body += b"\xc6" + (size - len(body) - 5).to_bytes(4, "big")
        ok = wa.send_quietly(s, head + size.to_bytes(4, "big") + body)
        left = sent - len(body)
        while ok and left > 0:
            ok = wa.send_quietly(s, chunk[:min(left, MiB)])
            left -= MiB
        socks.append(s)
    return socks


@pytest.mark.parametrize("mode", ["plaintext", "tls"])
def test_partial_frames_stay_within_the_budget(mode, make_cluster, certs):
    """Eight partial 60 MiB frames took a node to +427 MiB; the read budget (128 MiB by
    default, for all connections) holds, whatever the number of connections."""
    c = make_cluster((lambda i: tls_spec(certs, f"server-{i}")) if mode == "tls" else
                     (lambda i: None))
    leader = c.leader()
    pid = c.procs[leader].p.pid
    c.write("before", "frames")
    before = wa.rss_kib(pid)
    socks = partial_frames(c.peers[leader], 8, 60 * MiB, 60 * MiB - 64 * 1024)
    try:
        time.sleep(0.5)  # let the node read what is in flight before measuring
        grown = (wa.rss_kib(pid) - before) // 1024
        assert grown < 200, f"the node grew by {grown} MiB"
        c.write("during", "frames")
    finally:
        for s in socks:
            s.close()
    log = c.procs[leader].logs()
    if mode == "plaintext":
        assert "would exceed the read budget" in log
    else:
        assert "TLS handshake failed" in log
    c.converged()


def test_limits_from_python(tmp_path):
    port = free_ports(1)[0]
    address = f"127.0.0.1:{port}"
    limits = {"max_clients_per_ip": 2, "client_idle_timeout_ms": 300, "max_client_requests": 1}
    with craft.Node(1, address, str(tmp_path / "n1"), KV(), peers={1: address},
                    cluster_id=CLUSTER_ID, limits=limits, log_level="error") as node:
        node.wait_for_leader(timeout=10)
        a = wa.connect(address)
        b = wa.connect(address)
        extra = wa.connect(address)
        for s in (a, b, extra):
            wa.send_quietly(s, wa.handshake(0, 0, CLUSTER_ID))
        assert wa.closed_by_peer(extra)  # a third client from one address
        # Three writes at once (each waits for its fsync), one allowed in flight: the others
        # are answered busy at once.
        cmd = craft.codec.dumps(["set", "x", "1"])
        wa.send_quietly(a, wa.request(1, cmd) + wa.request(2, cmd) + wa.request(3, cmd))
        frames = [f for f in wa.read_frames(a, timeout=1.0) if f[1] == wa.RESPONSE]
        codes = sorted(f[6] for f in frames)
        assert codes.count(-4) >= 1 and 0 in codes, frames
        # b said nothing since its handshake: closed once idle.
        assert wa.closed_by_peer(b, timeout=10)
        for s in (a, b, extra):
            s.close()
    with pytest.raises(craft.ConfigError):
        craft.Node(1, address, str(tmp_path / "n2"), KV(), peers={1: address},
                   limits={"max_clients": -1})
    with pytest.raises(craft.ConfigError):
        craft.Node(1, address, str(tmp_path / "n2"), KV(), peers={1: address},
                   limits={"nonsense": 1})


# ---- TLS refusals ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,ca,logged", [
    ("wrong-ca-server-4", "ca.pem", "certificate verify failed"),  # another CA
    ("expired-server-4", "ca.pem", "certificate has expired"),
    ("server-4", "other-ca.pem", "alert"),  # the client does not trust the cluster's CA
])
def test_tls_refuses_bad_certificates(name, ca, logged, make_cluster, certs):
    c = make_cluster(lambda i: tls_spec(certs, f"server-{i}"))
    leader = c.leader()
    term = c.procs[leader].status()["term"]
    try:
        s = wa.connect(c.peers[leader], tls=client_tls(certs, name, ca))
        # TLS 1.3: the client finishes first; the server's verdict arrives as an alert.
        wa.send_quietly(s, wa.handshake(leader, leader, CLUSTER_ID) + wa.request(1, b"x"))
        frames = wa.read_frames(s)
        s.close()
    except OSError:
        frames = []
    assert frames == []
    wait_until(lambda: logged in c.procs[leader].logs(), 5, f"'{logged}' in the log")
    assert "TLS handshake failed" in c.procs[leader].logs()
    unaffected(c, leader, term)


def test_tls_refuses_a_certificate_for_another_id(make_cluster, certs):
    c = make_cluster(lambda i: tls_spec(certs, f"server-{i}"))
    leader = c.leader()
    follower = next(i for i in c.procs if i != leader)
    term = c.procs[follower].status()["term"]
    # A valid certificate of the cluster's CA, but for server 4, claiming to be the leader.
    s = wa.connect(c.peers[follower], tls=client_tls(certs, "server-4"))
    wa.send_quietly(s, wa.handshake(leader, follower, CLUSTER_ID, c.peers[leader]) +
                    wa.timeout_now(leader, follower, term))
    assert wa.closed_by_peer(s)
    s.close()
    assert f"it claims to be server {leader} with a certificate for server 4" in \
        c.procs[follower].logs()
    # A client's certificate claiming the leader's id.
    s = wa.connect(c.peers[follower], tls=client_tls(certs, "client"))
    wa.send_quietly(s, wa.handshake(leader, follower, CLUSTER_ID, c.peers[leader]))
    assert wa.closed_by_peer(s)
    s.close()
    assert "with a certificate that names no server id" in c.procs[follower].logs()
    unaffected(c, leader, term)
    # The client's certificate as a client: served.
    assert served(c.peers[leader], client_tls(certs))[6] == 0


# ---- rotation under write load -----------------------------------------------------------------

def rotate(c, stages, pause=0.5):
    for stage in stages:
        for i, p in c.procs.items():
            answer = p.ask("security " + json.dumps(stage(i)))
            assert answer == "ok", answer
        time.sleep(pause)


def no_acknowledged_write_lost(c, writer):
    acked_line = c.procs[writer].ask("load stop", 60)
    assert acked_line.startswith("acked "), acked_line
    acked = json.loads(acked_line[6:])
    assert len(acked) > 20, f"only {len(acked)} writes acknowledged during the rotation"
    state = c.converged(30)
    missing = [k for k in acked if k not in state]
    assert missing == [], f"{len(missing)} acknowledged writes lost: {missing[:5]}"
    for p in c.procs.values():
        local = p.data("local")
        assert all(k in local for k in acked)
    return acked


def test_secret_rotation_under_write_load(make_cluster, tmp_path):
    old, new = tmp_path / "old.secret", tmp_path / "new.secret"
    craft.generate_secret(old)
    craft.generate_secret(new)
    c = make_cluster(lambda i: {"secret": {"file": str(old)}})
    writer = c.leader()
    assert c.procs[writer].ask("load start") == "ok"
    time.sleep(0.5)
    rotate(c, [
        lambda i: {"secret": {"file": str(old), "accept_file": str(new)}},  # accept the new
        lambda i: {"secret": {"file": str(new), "accept_file": str(old)}},  # connect with it
        lambda i: {"secret": {"file": str(new)}},                           # drop the old
    ])
    no_acknowledged_write_lost(c, writer)
    assert any("no longer accepted" in p.logs() for p in c.procs.values())
    # The old secret no longer gets in.
    for p in c.procs.values():
        assert "secret" in p.logs()


def test_certificate_rotation_under_write_load(make_cluster, certs):
    c = make_cluster(lambda i: tls_spec(certs, f"server-{i}"))
    writer = c.leader()
    assert c.procs[writer].ask("load start") == "ok"
    time.sleep(0.5)
    rotate(c, [
        lambda i: tls_spec(certs, f"server-{i}", "ca-bundle.pem"),      # trust both CAs
        lambda i: tls_spec(certs, f"new-server-{i}", "ca-bundle.pem"),  # new certificates
        lambda i: tls_spec(certs, f"new-server-{i}", "new-ca.pem"),     # only the new CA
    ])
    no_acknowledged_write_lost(c, writer)
    assert any("no longer trusted" in p.logs() for p in c.procs.values())
    # A client with a certificate of the old CA is refused now; one of the new is served.
    leader = c.leader()
    assert served(c.peers[leader], client_tls(certs, "client", "new-ca.pem")) is None
    assert served(c.peers[leader], client_tls(certs, "new-client", "new-ca.pem"))[6] == 0


# ---- both modes from Python, in one process -------------------------------------------------------

@pytest.mark.parametrize("mode", ["secret", "passphrase", "tls"])
def test_python_cluster_in_each_mode(mode, tmp_path, certs):
    ports = free_ports(3)
    peers = {i: f"127.0.0.1:{p}" for i, p in zip((1, 2, 3), ports)}
    if mode == "secret":
        craft.generate_secret(tmp_path / "s")
        sec = lambda i: craft.Secret(file=tmp_path / "s")  # noqa: E731
    elif mode == "passphrase":
        sec = lambda i: craft.Secret(passphrase="correct horse battery staple")  # noqa: E731
    else:
        sec = lambda i: craft.TLS(cert=certs / f"server-{i}.pem",  # noqa: E731
                                  key=certs / f"server-{i}.key", ca=certs / "ca.pem")
    nodes = [craft.Node(i, peers[i], str(tmp_path / f"n{i}"), KV(), peers=peers,
                        heartbeat_ms=20, election_timeout_ms=200, security=sec(i),
                        log_level="error") for i in peers]
    try:
        for n in nodes:
            n.start()
        nodes[0].apply(craft.codec.dumps(["set", "k", "v"]), timeout=10)
        assert nodes[2].read(lambda f: f.data.get("k"), timeout=10) == "v"
    finally:
        for n in nodes:
            n.close()


def test_python_security_errors(tmp_path, certs):
    address = f"127.0.0.1:{free_ports(1)[0]}"
    with pytest.raises(craft.ConfigError, match="names server 2"):
        craft.Node(1, address, str(tmp_path / "a"), KV(), peers={1: address},
                   security=craft.TLS(cert=certs / "server-2.pem", key=certs / "server-2.key",
                                      ca=certs / "ca.pem")).start()
    with pytest.raises(craft.ConfigError, match="does not match"):
        craft.Node(1, address, str(tmp_path / "b"), KV(), peers={1: address},
                   security=craft.TLS(cert=certs / "server-1.pem", key=certs / "server-2.key",
                                      ca=certs / "ca.pem")).start()
    with pytest.raises(craft.ConfigError, match="cannot read the secret file"):
        craft.security.check(craft.Secret(file=tmp_path / "missing"))
    (tmp_path / "short").write_text("tiny\n")
    with pytest.raises(craft.ConfigError, match="at least 16"):
        craft.security.check(craft.Secret(file=tmp_path / "short"))
    with pytest.raises(craft.ConfigError):
        craft.Secret()
    with pytest.raises(craft.ConfigError):
        craft.Node(1, address, str(tmp_path / "c"), KV(), peers={1: address}, security="tls")
    craft.generate_secret(tmp_path / "s")
    assert oct(os.stat(tmp_path / "s").st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):
        craft.generate_secret(tmp_path / "s")
    # set_security checks before it changes anything.
    with craft.Node(1, address, str(tmp_path / "d"), KV(), peers={1: address},
                    security=craft.Secret(file=tmp_path / "s"), log_level="error") as node:
        node.wait_for_leader(timeout=10)
        with pytest.raises(craft.ConfigError, match="cannot read"):
            node.set_security(craft.Secret(file=tmp_path / "missing"))
        node.apply(craft.codec.dumps(["set", "still", "ok"]), timeout=5)
