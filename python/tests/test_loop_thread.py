"""Python code that runs on one of a node's own threads (an event callback on its loop thread, a
read function or a request's completion on its state machine thread) and calls back into the
node: what it may do, and what it is refused."""

import threading

import pytest

import craft
from craft import _craft

from conftest import KV, cmd, free_ports, wait_until

loads = craft.codec.loads


def single_node(tmp_path, **options):
    address = f"127.0.0.1:{free_ports(1)[0]}"
    opts = dict(fsync=False, heartbeat_ms=20, election_timeout_ms=200, timeout=10.0)
    opts.update(options)
    node = craft.Node(1, address, str(tmp_path / "n1"), KV(), peers={1: address}, **opts)
    return node


def test_completions_that_submit_from_the_loop_thread_are_each_answered_once(tmp_path):
    """A completion callback (run by the runtime while it answers a batch of applied commands)
    submits the next proposal. Before the runtime guarded against re-entry, the nested submit
    applied the next batch inside the answers of the current one, and the rest of the current
    batch was reported dropped although it had been applied."""
    node = single_node(tmp_path, sessions=False)
    node.start()
    try:
        node.wait_for_leader(5)
        limit, first = 4000, 2000  # more at once than one apply batch (1024) takes
        answers = []
        submitted = [0]

        def done(status, index, data, leader_id, leader_address):  # on the loop thread
            answers.append((status, index, data))
            if submitted[0] < limit:
                submitted[0] += 1
                node._c.submit_async(_craft.OP_PROPOSE, cmd("inc", "x", 1), done, 10.0)

        for _ in range(first):
            submitted[0] += 1
            node._c.submit_async(_craft.OP_PROPOSE, cmd("inc", "x", 1), done, 10.0)
        wait_until(lambda: len(answers) == limit, 60, "every proposal to be answered")
        failed = [a for a in answers if a[0] != 0]
        assert failed == [], f"{len(failed)} proposals failed, first: {failed[:3]}"
        # Each answer carries the counter after its own command: 1..limit, each once.
        assert sorted(loads(a[2]) for a in answers) == list(range(1, limit + 1))
        assert node.fsm.applied == sorted(set(node.fsm.applied))  # once each, in log order
        assert node.read(lambda f: f.data["x"]) == limit
    finally:
        node.close()


def test_event_callback_submits_on_the_loop_thread(tmp_path):
    """A "role" callback that proposes from the loop thread when its node becomes leader."""
    node = single_node(tmp_path, sessions=False)
    got = []

    def on_role(role, term, leader):
        if role == "leader":
            node._c.submit_async(_craft.OP_PROPOSE, cmd("set", "by", "event"),
                                 lambda *a: got.append(a), 10.0)

    node.on("role", on_role)
    node.start()
    try:
        wait_until(lambda: got, 10, "the proposal made from the event")
        assert got[0][0] == 0 and loads(got[0][2]) == "event"
        assert node.read(lambda f: f.data) == {"by": "event"}
    finally:
        node.close()


def test_close_from_the_loop_thread_is_refused(tmp_path):
    """close() joins the loop thread: called on that thread (an event callback, a read function)
    it used to fail to join itself, say nothing, mark the node closed and drop the loop's
    reference to it while the loop went on running. It is refused with a clear error; the node
    keeps serving, and closes from another thread."""
    node = single_node(tmp_path)
    refused = []

    def on_role(role, term, leader):
        if role == "leader":
            try:
                node.close()
            except Exception as e:  # noqa: BLE001 - the test records whatever it is
                refused.append(e)

    node.on("role", on_role)
    node.start()
    try:
        wait_until(lambda: refused, 10, "close() from the event callback to be refused")
        assert isinstance(refused[0], RuntimeError), repr(refused[0])
        assert "another thread" in str(refused[0])
        assert node.running
        with pytest.raises(RuntimeError, match="another thread"):
            node.read(lambda fsm: node.close())
        assert node.running
        assert loads(node.apply(cmd("set", "after", 1))) == 1
    finally:
        node.close()
    assert not node.running
    node.close()  # idempotent
