"""First-week mistakes, made on purpose: each gets a clear error and never a crash, a hang or a
silent loss (issue 14). Real nodes on 127.0.0.1; processes where the mistake is about
processes."""

import os
import subprocess
import sys
import textwrap

import pytest

import craft

from conftest import SEGMENT, KV, Cluster, cmd, free_ports, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))


def run_script(tmp_path, body, timeout=60):
    """Runs body as a Python script (with this interpreter and tests' conftest importable):
    returns (exit status, output)."""
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(path)], cwd=str(tmp_path), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


# ---- fork after start() -------------------------------------------------------------------------

def test_a_process_forked_after_start_gets_clear_errors_and_exits_cleanly(tmp_path):
    rc, out = run_script(tmp_path, f"""
        import os, sys, time
        import craft
        from conftest import KV, cmd, free_ports

        port = free_ports(1)[0]
        peers = {{1: f"127.0.0.1:{{port}}"}}
        node = craft.Node(1, peers[1], "data", KV(), peers=peers, fsync=False,
                          segment_size={SEGMENT}, timeout=2.0)
        node.start()
        node.wait_for_leader(5)
        node.apply(cmd("set", "x", 1))
        pid = os.fork()
        if pid == 0:
            calls = {{
                "status": lambda: node.status(),
                "apply": lambda: node.apply(cmd("set", "y", 2)),
                "read": lambda: node.read(lambda f: f.data),
                "stale read": lambda: node.read(lambda f: f.data, mode="stale"),
                "leader": lambda: node.leader,
                "session": lambda: node.session(),
                "add_server": lambda: node.add_server(2, "127.0.0.1:1"),
            }}
            for name, call in calls.items():
                t0 = time.monotonic()
                try:
                    call()
                    print("child:", name, "did not raise")
                except craft.Error as e:
                    print("child:", name, type(e).__name__, "after %.1fs" % (time.monotonic() - t0), e)
            node.close()      # nothing to close here: no error
            print("child: done")
            sys.exit(0)       # atexit closes the nodes it knows: must not crash
        _, status = os.waitpid(pid, 0)
        print("child status", status)
        # The parent's node is untouched by the child.
        print("parent:", craft.codec.loads(node.apply(cmd("set", "z", 3))))
        node.close()
    """)
    assert "child status 0" in out, out
    assert "did not raise" not in out, out
    for name in ("status", "apply", "read", "stale read", "leader", "session", "add_server"):
        line = next((l for l in out.splitlines() if l.startswith(f"child: {name} ")), "")
        assert "Forked" in line and "after 0.0s" in line, out
        assert "start nodes after forking" in line, out
    assert "child: done" in out and "parent: 3" in out, out
    assert rc == 0, out


def test_a_process_forked_after_a_node_closed_exits_cleanly(tmp_path):
    # libuv's thread pool outlives the node; the child must not crash joining the parent's
    # threads at exit, and may start nodes of its own.
    rc, out = run_script(tmp_path, f"""
        import os, sys
        import craft
        from conftest import KV, cmd, free_ports

        def one_node(dir):
            port = free_ports(1)[0]
            peers = {{1: f"127.0.0.1:{{port}}"}}
            node = craft.Node(1, peers[1], dir, KV(), peers=peers, fsync=False,
                              segment_size={SEGMENT}, timeout=2.0)
            node.start()
            node.wait_for_leader(5)
            return node

        with one_node("parent"):
            pass
        pid = os.fork()
        if pid == 0:
            with one_node("child") as node:
                print("child:", craft.codec.loads(node.apply(cmd("set", "x", 7))))
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        print("child status", status)
    """)
    assert "child: 7" in out and "child status 0" in out, out
    assert rc == 0, out
