"""The .pyi of the C extension stays in step with it, and the typed API passes mypy --strict."""

import ast
import os
import shutil
import subprocess
import sys

import pytest

import craft
from craft import _craft

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG = os.path.dirname(craft.__file__)


def stub_names():
    path = os.path.join(ROOT, "python", "craft", "_craft.pyi")
    tree = ast.parse(open(path).read())
    names, members = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)
            members[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)} | \
                {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
    return {n for n in names if not n.startswith("_")}, members


def test_every_module_name_has_a_stub_and_back():
    stubs, _ = stub_names()
    public = {n for n in dir(_craft) if not n.startswith("_")}
    assert stubs == public, f"missing stubs: {public - stubs}; stale stubs: {stubs - public}"


def test_every_method_has_a_stub_and_back():
    _, members = stub_names()
    for cls, names in members.items():
        actual = {n for n in dir(getattr(_craft, cls)) if not n.startswith("_")}
        declared = {n for n in names if not n.startswith("_")}
        assert declared == actual, f"{cls}: missing {actual - declared}, stale {declared - actual}"


def test_package_ships_typing_markers():
    assert os.path.exists(os.path.join(PKG, "py.typed"))
    assert os.path.exists(os.path.join(PKG, "_craft.pyi"))


def test_public_api():
    for name in craft.__all__:
        assert hasattr(craft, name), name
    assert issubclass(craft.NotLeader, craft.Error) and issubclass(craft.ConfigError, ValueError)


@pytest.mark.skipif(shutil.which("mypy") is None and
                    subprocess.run([sys.executable, "-m", "mypy", "--version"],
                                   capture_output=True).returncode != 0,
                    reason="mypy is not installed")
def test_mypy_strict_accepts_the_example(tmp_path):
    example = os.path.join(ROOT, "examples", "python", "kv.py")
    env = dict(os.environ, MYPYPATH=os.path.join(ROOT, "python"))
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "--cache-dir", str(tmp_path), "-p", "craft"], capture_output=True,
                       text=True, env=env, cwd=os.path.join(ROOT, "python"), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "--cache-dir", str(tmp_path), example], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


TYPED_USE = '''
import asyncio
import craft

class Counter(craft.StateMachine):
    def __init__(self) -> None:
        self.n = 0
    def apply(self, command: bytes, index: int) -> bytes:
        self.n += 1
        return b""

def use(node: "craft.Node[Counter]") -> None:
    n: int = node.read(lambda fsm: fsm.n)
    s = node.status()
    role: craft.Role = s["role"]
    lag: int = s["peers"][0]["lag"]
    node.on("follower_lagging", lambda follower, lag, match: None)

async def use_async(node: "craft.Node[Counter]") -> None:
    n: int = await node.read_async(lambda fsm: fsm.n)
    async for ev in node.events("leader"):
        name: craft.EventName = ev.name
    await node.add_server_async(4, "127.0.0.1:7004")

node = craft.Node(1, "127.0.0.1:0", "/tmp/x", Counter(), peers={1: "127.0.0.1:0"},
                  heartbeat_ms=50, metrics_address="127.0.0.1:0")
use(node)
'''

# Each a mistake mypy --strict must catch: an option, an event, a status key, a read function
# of the wrong state machine.
TYPED_MISTAKES = [  # (the correct text, the mistake put in its place)
    ("heartbeat_ms=50", "heartbeats_ms=50"),
    ('node.on("follower_lagging"', 'node.on("follower_lag"'),
    ('s["peers"][0]["lag"]', 's["peers"][0]["lagg"]'),
    ("node.read(lambda fsm: fsm.n)", "node.read(lambda fsm: fsm.count)"),
    ('node.events("leader")', 'node.events("leaders")'),
]


@pytest.mark.skipif(shutil.which("mypy") is None and
                    subprocess.run([sys.executable, "-m", "mypy", "--version"],
                                   capture_output=True).returncode != 0,
                    reason="mypy is not installed")
def test_mypy_strict_catches_a_misspelt_option_event_or_key(tmp_path):
    env = dict(os.environ, MYPYPATH=os.path.join(ROOT, "python"))

    def check(code):
        path = tmp_path / "use.py"
        path.write_text(code)
        return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                               "--cache-dir", str(tmp_path / "cache"), str(path)],
                              capture_output=True, text=True, env=env, timeout=300)
    r = check(TYPED_USE)
    assert r.returncode == 0, r.stdout + r.stderr
    for right, wrong in TYPED_MISTAKES:
        assert right in TYPED_USE, right
        r = check(TYPED_USE.replace(right, wrong, 1))
        assert r.returncode != 0, f"mypy accepted {wrong!r}"
