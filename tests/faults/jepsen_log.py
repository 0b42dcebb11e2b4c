"""Parser for Jepsen's textual operation log (jepsen.util lines), as in the etcd histories of
tests/faults/data/jepsen-etcd (see the README there):

    INFO  jepsen.util - 3	:invoke	:cas	[3 0]
    INFO  jepsen.util - 3	:ok	:cas	[3 0]
    INFO  jepsen.util - 4	:info	:write	:timed-out

Each invocation is matched with the next completion of the same process. Times are line numbers,
which keeps Jepsen's real-time order (the log is written in the order events happened).

How completions map to operations (linearizability.Op):
* ``:ok``   the operation took effect; a read's value is its output (``nil`` -> None), a cas's
            output is True.
* ``:fail`` the operation certainly did not take effect. For a cas this is what etcd's client
            reports when the compare did not match, so it is kept as a cas that returned False
            (the register then held something other than `from` at some instant of the call;
            this is also how Porcupine reads these logs). A failed read or write is dropped.
* ``:info`` outcome unknown (``:timed-out``, a crash): the operation gets ``ret=None`` and may
            take effect at any time after its call, or never. Jepsen then gives the process a new
            number, so numbers are not reused while an operation is pending; if one is anyway,
            the earlier operation is treated as unknown too.
* an invocation never completed by the end of the log is also unknown.

Lines that are not client operations (nemesis lines, other loggers, timestamps in front, blank
lines) are skipped. Values: ``nil``, integers, ``[a b]`` vectors (tuples), ``:keywords`` and
quoted strings; anything else is kept as its text.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Iterable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from linearizability import Op  # noqa: E402

__all__ = ["parse_jepsen_log", "parse_jepsen_lines", "parse_value"]

# Anything before "jepsen.util -" (a timestamp, the level) is ignored; fields are separated by
# tabs in the files but any whitespace is accepted. The process must be an integer: the nemesis
# logs itself as ":nemesis" and is not a client.
_LINE = re.compile(
    r"jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:([\w-]+)(?:\s+(.*?))?\s*$")
_TOKEN = re.compile(r'\[|\]|"(?:[^"\\]|\\.)*"|[^\s\[\],]+')


def parse_value(text: str) -> Any:
    """Parse an EDN-ish value as Jepsen prints it: nil, ints, [vectors], :keywords, "strings"."""
    text = (text or "").strip()
    if not text:
        return None
    tokens = _TOKEN.findall(text)
    pos = 0

    def one() -> Any:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "[":
            items = []
            while pos < len(tokens) and tokens[pos] != "]":
                items.append(one())
            pos += 1  # the "]" (tolerates a missing one at the end)
            return tuple(items)  # hashable: values end up in the checker's cache
        if tok == "nil":
            return None
        if tok in ("true", "false"):
            return tok == "true"
        if tok.startswith('"'):
            return tok[1:-1].encode().decode("unicode_escape")
        try:
            return int(tok)
        except ValueError:
            return tok  # ":timed-out" and other keywords stay text

    value = one()
    return value if pos >= len(tokens) else text  # trailing junk: keep the raw text


def parse_jepsen_lines(lines: Iterable[str]) -> list:
    """Operations of a Jepsen log, in call order (see the module docstring for the mapping)."""
    ops: list = []
    pending: dict = {}  # process -> (call line, kind, input)

    def unknown(process: int) -> None:
        call, kind, inp = pending.pop(process)
        ops.append(Op(process, call, None, kind, inp, None))

    for lineno, line in enumerate(lines, start=1):
        m = _LINE.search(line)
        if not m:
            continue
        process, typ, kind, raw = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        value = parse_value(raw)
        if typ == "invoke":
            if process in pending:  # should not happen: Jepsen renumbers after :info
                unknown(process)
            pending[process] = (lineno, kind, value if kind != "read" else None)
            continue
        if process not in pending:
            raise ValueError("line %d: %s of process %d without an invocation: %r"
                             % (lineno, typ, process, line.rstrip("\n")))
        call, ikind, inp = pending[process]
        if ikind != kind:
            raise ValueError("line %d: process %d invoked %s but completed %s"
                             % (lineno, process, ikind, kind))
        if typ == "info":
            unknown(process)
            continue
        del pending[process]
        if typ == "ok":
            out = value if kind == "read" else (True if kind == "cas" else None)
            ops.append(Op(process, call, lineno, kind, inp, out))
        elif kind == "cas":  # :fail of a cas: the compare did not match
            ops.append(Op(process, call, lineno, kind, inp, False))
        # any other :fail did not happen: dropped

    for process in list(pending):
        unknown(process)
    ops.sort(key=lambda op: op.call)
    return ops


def parse_jepsen_log(path: str) -> list:
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_jepsen_lines(f)
