"""docs/operations.md runs as written (issue 15): each procedure of the operator's page is a
sequence of its shell blocks (marked `<!-- ops: NAME -->`), run here by bash with `set -e`
against real processes (examples/python/kv.py servers and the `craft` command line), so that
the page cannot drift from what the software does. Every command of a block must succeed; the
blocks check their own outcomes (`grep -x`, exit statuses, small Python checks).

The only changes made to the text before it runs: the page's ports (Raft 7001-7005, clients
8001-8005, metrics 9101-9105) become free ports of this machine, and the work directory is a
fresh temporary one. All the servers a procedure starts are killed at its end (they run in the
script's process group)."""

import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import free_range

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PAGE = os.path.join(ROOT, "docs", "operations.md")
FENCE = re.compile(r"^```(\w*)\s*$")

# Each procedure of the page: the blocks it runs, in order.
PROCEDURES = {
    "deploy_three": ["setup", "deploy3"],
    "deploy_five": ["setup", "deploy5"],
    "watch": ["setup", "deploy3", "watch"],
    "replace_a_dead_server": ["setup", "deploy3", "replace"],
    "change_an_address": ["setup", "deploy3", "address"],
    "recover_from_losing_a_majority": ["setup", "deploy3", "majority"],
    "backup_and_restore": ["setup", "deploy3", "backup", "restore-member", "restore-cluster"],
    "upgrade": ["setup", "deploy3", "upgrade"],
}


def ops_blocks():
    """{name: code} of the page's marked shell blocks."""
    out, lang, lines, name, prev = {}, None, [], None, ""
    for line in open(PAGE, encoding="utf-8").read().splitlines():
        m = FENCE.match(line)
        if lang is None and m:
            lang, lines = m.group(1), []
            tag = re.match(r"<!-- ops: ([\w-]+) -->", prev)
            name = tag.group(1) if tag else None
        elif lang is not None and line.startswith("```"):
            if name is not None:
                assert lang == "sh", f"ops block {name} is not a sh block"
                assert name not in out, f"two ops blocks named {name}"
                out[name] = "\n".join(lines) + "\n"
            lang = None
        elif lang is not None:
            lines.append(line)
        prev = line.strip()
    return out


def localize(code, raft, client, metrics):
    """The page's ports become free ones (see the module's docstring)."""
    code = re.sub(r"127\.0\.0\.1:700(\d)", lambda m: f"127.0.0.1:{raft + int(m.group(1))}", code)
    code = code.replace("127.0.0.1:700$i", f"127.0.0.1:$(({raft} + i))")
    code = re.sub(r"127\.0\.0\.1:910(\d)", lambda m: f"127.0.0.1:{metrics + int(m.group(1))}",
                  code)
    code = code.replace("127.0.0.1:910$i", f"127.0.0.1:$(({metrics} + i))")
    code = code.replace("--client-base 8000", f"--client-base {client}")
    code = re.sub(r"--port 800(\d)", lambda m: f"--port {client + int(m.group(1))}", code)
    assert not re.search(r"\b(700\d|800\d|910\d)\b", code), "a port the test did not map"
    return code


def test_every_block_belongs_to_a_procedure():
    blocks = ops_blocks()
    used = {b for names in PROCEDURES.values() for b in names}
    assert set(blocks) == used, (set(blocks) ^ used)


@pytest.mark.parametrize("procedure", sorted(PROCEDURES))
def test_the_procedure_runs_as_written(tmp_path, procedure):
    blocks = ops_blocks()
    raft, client, metrics = free_range(5), free_range(5), free_range(5)
    script = "set -euo pipefail\n" + "".join(
        f"echo '>>> ops block: {name}'\n" + localize(blocks[name], raft, client, metrics)
        for name in PROCEDURES[procedure])
    path = tmp_path / "procedure.sh"
    path.write_text(script)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["KV"] = os.path.join(ROOT, "examples", "python", "kv.py")
    env.pop("CRAFT_SERVERS", None)
    env.pop("CRAFT_SECRET_FILE", None)
    p = subprocess.Popen(["bash", str(path)], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    try:
        out, _ = p.communicate(timeout=600)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # every server the procedure started
        except ProcessLookupError:
            pass
        p.wait()
    logs = ""
    work = tmp_path / "kv-ops"
    if p.returncode != 0 and work.is_dir():
        for log in sorted(work.glob("kv*.log")):
            logs += f"\n--- {log.name} (last lines)\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-15:])
    assert p.returncode == 0, f"{procedure} failed:\n{out}{logs}"
