"""pytest glue for the lab's testers: a failing test's report ends with its seed, the command
that replays it, and the last events of the simulation (the transcript of what went wrong)."""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_cluster():
    harness.current = None
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    seed = item.callspec.params.get("seed") if hasattr(item, "callspec") else None
    lab = harness.current
    lines = []
    exc = call.excinfo.value if call.excinfo is not None else None
    trace = getattr(exc, "trace", None)
    if not trace and lab is not None:
        trace = lab.c.trace()
    raft = os.environ.get("LAB_RAFT", "raft:Raft")
    lines.append(f"seed {seed}, Raft {raft}")
    if trace:
        lines.append("last events:")
        lines.extend("  " + t for t in trace[-60:])
    name = item.originalname or item.name
    lines.append(f"replay: LAB_SEED={seed} LAB_RAFT={raft} python -m pytest "
                 f"{os.path.relpath(str(item.fspath))} -k {name}")
    report.sections.append(("lab", "\n".join(lines)))
