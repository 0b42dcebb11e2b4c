"""The make demo service (examples/python/kv.py, scripts/demo.sh) survives exactly the restart it
demonstrates: three kv.py processes on 127.0.0.1, a client connected to the leader's client port,
the leader killed with SIGKILL, the others go on, and the leader restarted with the same command
on the same ports serves again. (Its client listener used to lack address reuse: the killed
process's connection to the still-connected client held the port, and the restart failed with
"Address already in use".)"""

import os
import random
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KV = os.path.join(ROOT, "examples", "python", "kv.py")


def free_base():
    """A base such that base+1..base+3 are free on 127.0.0.1 (kv.py's port layout)."""
    for _ in range(200):
        base = random.randrange(20000, 60000, 10)
        socks = []
        try:
            for i in range(1, 4):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free port range")


class Server:
    def __init__(self, node_id, data, raft_base, client_base):
        self.id = node_id
        self.log = os.path.join(data, f"n{node_id}.out")
        self.args = [sys.executable, KV, "serve", str(node_id), "--data", data,
                     "--raft-base", str(raft_base), "--client-base", str(client_base),
                     "--timeout", "10"]
        self.port = client_base + node_id
        self.p = None

    def start(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        with open(self.log, "w") as out:
            self.p = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, env=env)

    def output(self):
        with open(self.log) as f:
            return f.read()

    def wait_serving(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "serving clients" in self.output():
                return
            if self.p.poll() is not None:
                raise AssertionError(f"kv.py server {self.id} exited with {self.p.returncode}:\n"
                                     f"{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"kv.py server {self.id} did not start:\n{self.output()}")

    def kill9(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def stop(self):
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class Client:
    """One connection to a kv.py client port: one line out, one line back."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.f = self.s.makefile("rw")

    def ask(self, line):
        self.f.write(line + "\n")
        self.f.flush()
        return self.f.readline().strip()

    def close(self):
        self.f.close()
        self.s.close()


def ask(port, line, timeout=20):
    """One request on a fresh connection, retried until an answer that is not an error."""
    deadline = time.monotonic() + timeout
    answer = ""
    while time.monotonic() < deadline:
        try:
            c = Client(port)
            try:
                answer = c.ask(line)
            finally:
                c.close()
            if answer and not answer.startswith("ERR"):
                return answer
        except OSError as e:
            answer = f"({e})"
        time.sleep(0.1)
    raise AssertionError(f"{line!r} on port {port}: {answer}")


def test_killed_leader_restarts_on_its_ports_with_a_client_connected(tmp_path):
    data = str(tmp_path)
    raft_base = free_base()
    client_base = free_base()
    while client_base == raft_base:
        client_base = free_base()
    servers = {i: Server(i, data, raft_base, client_base) for i in (1, 2, 3)}
    held = []
    try:
        for s in servers.values():
            s.start()
        for s in servers.values():
            s.wait_serving()
        for k in range(5):
            assert ask(servers[1 + k % 3].port, "incr visits") == str(k + 1)
        status = ask(servers[1].port, "status")
        leader = int(status.split("leader=")[1].split()[0])
        # Clients connected to every server, the leader's among them, stay connected through the
        # kill (they are served, then wait for their next request).
        for s in servers.values():
            c = Client(s.port)
            assert c.ask("status").startswith("id=")
            held.append(c)
        servers[leader].kill9()
        survivor = 1 if leader != 1 else 2
        for k in range(5, 10):
            assert ask(servers[survivor].port, "incr visits") == str(k + 1)
        servers[leader].start()  # the same command, the same ports
        servers[leader].wait_serving()
        assert ask(servers[leader].port, "get visits") == "10"
        assert ask(servers[leader].port, "incr visits") == "11"
    finally:
        for c in held:
            try:
                c.close()
            except OSError:
                pass
        for s in servers.values():
            s.stop()


def test_the_demo_script_runs_its_restart_with_clients_connected():
    """scripts/demo.sh itself (what make demo runs after installing): it holds a client
    connection to every node while it kills the leader and restarts it on the same ports."""
    env = dict(os.environ, PY=sys.executable, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "demo.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "client on node" in r.stdout
    assert "nothing lost" in r.stdout
