"""The code in README.md, docs/python.md and docs/lua.md runs as written, so the docs cannot rot
(issue 14). Python blocks run here (a page's blocks one after the other, in one process, as a
reader would paste them; README.md's first example on its own); Lua blocks run in
spec/docs_spec.lua under both interpreters. Shell blocks are not run (they build, install and
benchmark), but every `make` target they name must exist in the Makefile and every file they
name must exist; so must every path of README.md's layout.

The only changes made to a block before it runs: the example addresses 127.0.0.1:7001..7003
become free ports (other programs may hold those), and the working directory is a fresh
temporary one. A block preceded by an HTML comment `<!-- doc-test: ... -->` says how it is
run (spec/docs_spec.lua reads those)."""

import os
import re
import subprocess
import sys

import pytest

from conftest import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(page):
    """(language, code, annotation) of every fenced block of page, in order."""
    out, lang, lines, note, prev = [], None, [], "", ""
    for line in open(os.path.join(ROOT, page), encoding="utf-8").read().splitlines():
        m = FENCE.match(line)
        if lang is None and m:
            lang, lines = m.group(1), []
            note = prev if prev.startswith("<!-- doc-test:") else ""
        elif lang is not None and line.startswith("```"):
            out.append((lang, "\n".join(lines) + "\n", note))
            lang = None
        elif lang is not None:
            lines.append(line)
        prev = line.strip()
    assert lang is None, f"{page}: an unclosed code block"
    return out


def with_free_ports(code):
    ports = free_ports(3)
    for i, p in enumerate(ports, 1):
        code = code.replace(f"127.0.0.1:700{i}", f"127.0.0.1:{p}")
    return code


def run_python(tmp_path, code, timeout=120):
    path = tmp_path / "doc_example.py"
    path.write_text(code)
    p = subprocess.run([sys.executable, str(path)], cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


def test_the_readme_first_example_runs_as_written(tmp_path):
    py = [code for lang, code, _ in blocks("README.md") if lang == "python"]
    assert len(py) == 1
    rc, out = run_python(tmp_path, with_free_ports(py[0]))
    assert rc == 0, out
    assert out.splitlines()[-2:] == ["b'5'", "b'7'"], out


def test_the_python_guide_runs_as_written(tmp_path):
    py = [code for lang, code, _ in blocks("docs/python.md") if lang == "python"]
    assert len(py) >= 3
    rc, out = run_python(tmp_path, with_free_ports("\n".join(py)))
    assert rc == 0, out
    assert "blue" in out.splitlines(), out


def test_every_lua_block_is_run_by_the_specs():
    # spec/docs_spec.lua runs docs/lua.md's blocks; it counts them the same way.
    lua = [b for b in blocks("docs/lua.md") if b[0] == "lua"]
    spec = open(os.path.join(ROOT, "spec", "docs_spec.lua")).read()
    assert len(lua) >= 4 and "docs/lua.md" in spec


def make_targets():
    text = open(os.path.join(ROOT, "Makefile")).read()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))


@pytest.mark.parametrize("page", ["README.md", "docs/python.md", "docs/lua.md"])
def test_shell_blocks_name_targets_and_files_that_exist(page):
    targets = make_targets()
    for lang, code, _ in blocks(page):
        if lang != "sh":
            continue
        for line in code.splitlines():
            command = line.split("#")[0]
            for target in re.findall(r"(?:^|[;&|]\s*)make\s+([a-z][\w-]*)", command.strip()):
                assert target in targets, f"{page}: `make {target}` is no target of the Makefile"
            for path in re.findall(r"(?<![\w/.-])((?:examples|bench|spec|scripts|c|python|lua)"
                                   r"/[\w./-]+|raft-[\d.]+-\d+\.rockspec)", command):
                assert os.path.exists(os.path.join(ROOT, path)), f"{page}: {path} does not exist"


def test_the_readme_layout_names_paths_that_exist():
    layout = [code for lang, code, _ in blocks("README.md") if lang == "" and "c/include" in code]
    assert layout
    for line in layout[0].splitlines():
        if line[:1].isspace():
            continue  # a description's continuation
        for path in line.split()[:1]:  # the left column: the path described
            path = path.rstrip(",")
            if ("/" not in path and "." not in path) or "<" in path:
                continue
            for one in path.split(","):
                assert os.path.exists(os.path.join(ROOT, one)), f"README.md layout: {one}"
