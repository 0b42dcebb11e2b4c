"""craft's version is written in one place, CRAFT_VERSION_STRING in c/include/craft.h; every
artefact carries that one (issue 18): the Python package (setup.py reads the header), the
rockspec (its file name and version field, checked here since luarocks needs them literal),
CMake's project version (CMakeLists.txt reads the header) and the Lua module (raft._VERSION).
spec/rockspec_spec.lua checks the Lua side again from inside Lua."""

import glob
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def header_version():
    with open(os.path.join(ROOT, "c", "include", "craft.h")) as f:
        text = f.read()
    m = re.search(r'^#define CRAFT_VERSION_STRING "(\d+)\.(\d+)\.(\d+)"', text, re.M)
    assert m, "CRAFT_VERSION_STRING missing from c/include/craft.h"
    for part, name in zip(m.groups(), ("MAJOR", "MINOR", "PATCH")):
        assert re.search(rf"^#define CRAFT_VERSION_{name} {part}$", text, re.M), name
    return ".".join(m.groups())


def test_the_rockspec_is_named_and_versioned_after_the_header():
    v = header_version()
    specs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*.rockspec")))
    assert len(specs) == 1, f"expected one rockspec, found {specs}"
    m = re.fullmatch(r"raft-(.+)-(\d+)\.rockspec", specs[0])
    assert m and m.group(1) == v, f"{specs[0]} does not carry craft's version {v}"
    with open(os.path.join(ROOT, specs[0])) as f:
        field = re.search(r'^version = "([^"]+)"', f.read(), re.M)
    assert field and field.group(1) == f"{v}-{m.group(2)}"


def test_the_python_package_takes_the_header_version():
    import craft

    v = header_version()
    assert craft.__version__ == v
    assert metadata.version("craft") == v
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        pyproject = f.read()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert not re.search(r"^version\s*=", pyproject, re.M), "a literal version in pyproject.toml"


def test_cmake_reads_the_header():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        cmake = f.read()
    assert re.search(r"project\(craft VERSION \$\{craft_version\}", cmake)
    assert "CRAFT_VERSION_STRING" in cmake


def test_the_lua_module_reports_the_header_version():
    v = header_version()
    tree = os.path.join(ROOT, "lua_modules")
    if not os.path.isdir(os.path.join(tree, "lib", "lua", "5.4")):
        pytest.fail("the rock is not built into ./lua_modules (make lua-install)")
    code = ("package.path = '{t}/share/lua/5.4/?.lua;{t}/share/lua/5.4/?/init.lua;' .. package.path;"
            "package.cpath = '{t}/lib/lua/5.4/?.so;' .. package.cpath;"
            "local raft = require 'raft'; print(raft._VERSION); print(raft.craft_version)"
            ).format(t=tree)
    r = subprocess.run(["lua5.4", "-e", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == [f"raft {v}", v]
