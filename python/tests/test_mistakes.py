"""First-week mistakes, made on purpose: each gets a clear error and never a crash, a hang or a
silent loss (issue 14). Real nodes on 127.0.0.1; processes where the mistake is about
processes."""

import os
import time
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


# ---- a command larger than a frame ----------------------------------------------------------------

FRAME = 256 * 1024


def test_a_command_too_large_for_a_frame_is_refused_at_once(tmp_path):
    c = Cluster(tmp_path, max_frame=FRAME)
    try:
        leader = c.leader()
        follower = next(i for i in c.nodes if i != leader)
        term = c.nodes[leader].status()["term"]
        limit = craft.max_command_size(FRAME)
        assert FRAME - 256 < limit < FRAME
        for node in (c.nodes[leader], c.nodes[follower]):
            t0 = time.monotonic()
            with pytest.raises(craft.TooLarge) as info:
                node.apply(b"x" * (limit + 1))
            assert time.monotonic() - t0 < 1.0
            msg = str(info.value)
            assert str(limit + 1) in msg and str(limit) in msg and "max_frame" in msg, msg
            assert isinstance(info.value, ValueError)
        # The largest command that fits is replicated, through a follower.
        size = limit - (len(cmd("set", "b", b"y" * 70000)) - 70000)
        largest = cmd("set", "b", b"y" * size)
        assert len(largest) == limit
        c.nodes[follower].apply(largest)
        wait_until(lambda: all(len(n.read(lambda f: f.data.get("b", b""), mode="stale")) ==
                               size for n in c.nodes.values()), 10,
                   "the largest command everywhere")
        st = c.nodes[leader].status()
        assert st["role"] == "leader" and st["term"] == term  # nobody was deposed
        for n in c.nodes.values():
            assert n.status()["counters"]["bad_frames"] == 0
    finally:
        c.close()


def test_a_backlog_of_large_commands_is_sent_in_frames_a_follower_accepts(tmp_path):
    # A follower that missed many large commands gets them in AppendEntries split by bytes: a
    # batch never exceeds the frame a follower accepts (before, batches of up to 1 MiB of
    # payload went to followers whose max_frame was smaller, which refused them forever).
    c = Cluster(tmp_path, max_frame=FRAME)
    try:
        leader = c.leader()
        behind = next(i for i in c.nodes if i != leader)
        term = c.nodes[leader].status()["term"]
        c.nodes[leader].set_faults(behind, block=True)
        chunk = craft.max_command_size(FRAME) // 3
        for i in range(12):
            c.nodes[leader].apply(cmd("set", f"k{i}", "z" * (chunk - 40)))
        c.nodes[leader].set_faults(behind)
        want = c.nodes[leader].read(lambda f: dict(f.data))
        wait_until(lambda: c.nodes[behind].read(lambda f: dict(f.data), mode="stale") == want,
                   15, "the lagging follower to catch up")
        for n in c.nodes.values():
            assert n.status()["counters"]["bad_frames"] == 0
        assert c.nodes[leader].status()["term"] == term
    finally:
        c.close()
