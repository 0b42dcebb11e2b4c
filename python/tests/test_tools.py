"""The console scripts pip installs with craft: craft-dump runs the C reader shipped in the
package (craft/bin/craft-dump) on a node's data directory."""

import os
import subprocess
import sys

import pytest

import craft
from craft import tools

from conftest import KV, SEGMENT, cmd, free_ports, wait_until

SCRIPT = os.path.join(os.path.dirname(sys.executable), "craft-dump")


def test_craft_dump_is_installed_as_a_console_script():
    assert os.access(SCRIPT, os.X_OK), f"pip installed no {SCRIPT}"
    assert os.access(tools.tool_path("craft-dump"), os.X_OK)
    assert tools.tool_path("craft-dump").startswith(os.path.dirname(craft.__file__))


def test_craft_dump_reads_a_data_directory(tmp_path):
    port = free_ports(1)[0]
    addr = f"127.0.0.1:{port}"
    data = tmp_path / "n1"
    with craft.Node(1, addr, str(data), KV(), peers={1: addr}, election_timeout_ms=100,
                    fsync=False, segment_size=SEGMENT) as node:
        wait_until(lambda: node.is_leader, 5, "leadership")
        node.apply(cmd("set", "a", 1))
    r = subprocess.run([SCRIPT, str(data)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "wal-" in r.stdout and "result: ok" in r.stdout, r.stdout
    # A damaged segment: exit status 1, and the file named.
    seg = sorted(p for p in os.listdir(data) if p.startswith("wal-"))[0]
    with open(data / seg, "r+b") as f:
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    r = subprocess.run([SCRIPT, str(data)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert seg in r.stdout + r.stderr


def test_craft_dump_usage_errors():
    r = subprocess.run([SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage: craft-dump DIR" in r.stderr


def test_a_missing_tool_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(tools, "BIN_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="craft-dump"):
        tools.tool_path("craft-dump")
    assert tools.dump_main([]) == 2
