#!/usr/bin/env python3
"""A linearizability checker for register and key-value histories (pure Python 3, stdlib only).

What it decides
---------------
A history is a set of operations, each with a call time and (when known) a return time. It is
linearizable when every operation can be given a single instant between its call and its return
such that, taken in the order of those instants, the operations are a legal sequential run of the
model (Herlihy & Wing, 1990). Two operations are ordered only when one returned before the other
was called; everything else is concurrent and may be linearized either way.

How
---
* The search is Wing & Gong's (J. M. Wing and C. Gong, "Testing and verifying concurrent objects",
  J. Parallel and Distributed Computing 17, 1993): walk the events in time order, repeatedly pick a
  pending call that is "minimal" (no unlinearized operation returned before it was called), apply
  it to the model, and backtrack when some operation's return is reached before it could be
  linearized.
* With Lowe's memoisation (G. Lowe, "Testing for linearizability", Concurrency and Computation:
  Practice and Experience 29(4), 2017): the search state is (set of operations already
  linearized, model state). Which order produced that set does not matter for the future, so each
  such pair is explored once; the set is an integer used as a bitset. The events live in a doubly
  linked list from which a linearized call and its return are "lifted" and later "unlifted" in
  stack order (dancing links), so that the next minimal call is always found from the head.
* With P-compositionality (A. Horn and D. Kroening, "Faster linearizability checking via
  P-compositionality", FORTE 2015): a key-value store is a product of independent registers, and a
  history is linearizable iff its restriction to every key is. The history is split per key and
  each key is checked on its own, which turns one exponential search into many small ones.

Models
------
``register``  one register (the key field is ignored): ``read`` -> value, ``write`` value,
              ``cas`` (from, to) -> True/False. The initial value is ``None`` (Jepsen's ``nil``).
``kv``        one register per key, whose extra state ``None`` means "missing" (also the initial
              state): ``read`` -> value or None, ``write``, ``cas`` (cas (None, v) is create-if-
              absent), and ``delete`` -> None (no claim) or True/False (whether the key existed).

Unknown outcomes
----------------
An operation with ``ret=None`` (Jepsen ``:info``: a timeout, a crash) may have taken effect at any
instant after its call, or never. It therefore has no return event: the search may linearize it
anywhere after its call, and is done when every *completed* operation is linearized, whatever
unknown ones remain. An unknown read cannot constrain anything and is dropped. An unknown cas is
only linearized where it would succeed (where it fails it is a no-op, which "never" covers).

Time budget
-----------
The problem is NP-complete (Gibbons & Korach, 1997); the memoisation makes real histories fast but
a pathological one (many concurrent writes and an impossible read) still explodes. Each key gets
``time_budget_s`` seconds; past it that key's verdict is ``"unknown"`` rather than a hang.

Usage
-----
    result = check(history, model="register", time_budget_s=10)
    result.verdict       # "ok" | "violation" | "unknown"
    result.explanation   # one paragraph; per-key details in result.per_key

    python3 tests/faults/linearizability.py FILE.log [FILE.log ...]   # Jepsen etcd logs
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Optional

__all__ = ["Op", "KeyResult", "Result", "check", "check_key", "MODELS"]

MODELS = ("register", "kv")

# Operation kinds, as small ints for the inner loop.
_READ, _WRITE, _CAS, _DELETE = 0, 1, 2, 3
_KINDS = {"read": _READ, "write": _WRITE, "cas": _CAS, "delete": _DELETE}

# How often (in search steps) the clock is read: time.monotonic() per step would cost ~10%.
_CLOCK_EVERY = 4096


@dataclass(frozen=True)
class Op:
    """One operation of a history.

    ``call`` and ``ret`` are any comparable times (Jepsen logs use line numbers). ``ret=None`` means
    the outcome is unknown. ``input``: the written value for write, ``(from, to)`` for cas, ignored
    for read and delete. ``output``: the value read (None = nil/missing) for read, True/False for
    cas, None or True/False (key existed) for delete, ignored for write and for unknown operations.
    Values must be hashable (they become part of the memoisation key).
    """

    process: Any
    call: Any
    ret: Any
    kind: str
    input: Any = None
    output: Any = None
    key: Hashable = None

    @property
    def known(self) -> bool:
        return self.ret is not None

    def describe(self) -> str:
        """Jepsen-like one-line rendering, for explanations."""
        if self.kind == "read":
            what = "read -> %s" % _show(self.output) if self.known else "read -> ?"
        elif self.kind == "write":
            what = "write %s" % _show(self.input)
        elif self.kind == "cas":
            frm, to = self.input
            res = ("ok" if self.output else "failed") if self.known else "outcome unknown"
            what = "cas %s->%s (%s)" % (_show(frm), _show(to), res)
        else:
            what = "delete" + ("" if self.output is None or not self.known else " -> %s" % self.output)
        key = "" if self.key is None else "key %r: " % (self.key,)
        ret = self.ret if self.known else "never (unknown outcome)"
        return "%sprocess %s %s [called %s, returned %s]" % (key, self.process, what, self.call, ret)


def _show(v: Any) -> str:
    return "nil" if v is None else repr(v)


@dataclass
class KeyResult:
    """The verdict for one key (one independent sub-history)."""

    key: Hashable
    verdict: str  # "ok" | "violation" | "unknown"
    ops: int  # operations checked (unknown reads are dropped before)
    elapsed_s: float
    states: int  # distinct (linearized set, model state) pairs visited
    explanation: str = ""
    # On a violation: the longest linearizable prefix found (ops in linearization order) and the
    # operation that then had to be linearized but could not be.
    longest_prefix: list = field(default_factory=list)
    stuck: Optional[Op] = None


@dataclass
class Result:
    verdict: str  # "ok" | "violation" | "unknown"
    per_key: dict  # key -> KeyResult
    explanation: str
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def _as_op(rec: Any) -> Op:
    """Accept an Op, a dict with Op's field names, or a tuple (process, call, ret, kind, input,
    output[, key])."""
    if isinstance(rec, Op):
        return rec
    if isinstance(rec, dict):
        return Op(**rec)
    return Op(*rec)


def _validate(op: Op, model: str) -> None:
    if op.kind not in _KINDS:
        raise ValueError("unknown operation kind %r in %r" % (op.kind, op))
    if op.kind == "delete" and model != "kv":
        raise ValueError("delete is only part of the kv model: %r" % (op,))
    if op.kind == "cas" and not (isinstance(op.input, (tuple, list)) and len(op.input) == 2):
        raise ValueError("cas input must be (from, to): %r" % (op,))
    if op.known and op.ret < op.call:
        raise ValueError("operation returns before its call: %r" % (op,))


# --------------------------------------------------------------------------------------------
# The search, for one register (one key)
# --------------------------------------------------------------------------------------------


def check_key(ops: list, key: Hashable = None, time_budget_s: Optional[float] = None,
              initial: Hashable = None) -> KeyResult:
    """Wing & Gong's search with Lowe's cache over the operations of one key.

    The register and kv models are the same thing per key: a value, or None for nil/missing.
    """
    t0 = time.monotonic()
    deadline = None if time_budget_s is None else t0 + time_budget_s

    # An unknown read neither changes the state nor needs to be justified: drop it.
    ops = [op for op in ops if op.known or op.kind != "read"]
    n = len(ops)
    if n == 0:
        return KeyResult(key, "ok", 0, 0.0, 0, "no operations")

    # Per-operation arrays for the inner loop (attribute lookups on Op would dominate it).
    kind = [_KINDS[op.kind] for op in ops]
    known = [op.known for op in ops]
    arg = [op.input for op in ops]
    out = [op.output for op in ops]

    # Events: a call per operation, a return per operation whose outcome is known. Sorted by time;
    # on equal times calls go first, so that touching operations count as concurrent (the more
    # permissive reading; Porcupine does the same).
    events = []
    for i, op in enumerate(ops):
        events.append((op.call, 0, i))
        if op.known:
            events.append((op.ret, 1, i))
    events.sort(key=lambda e: (e[0], e[1]))

    # Doubly linked list over nodes 1..m with sentinels HEAD=0 and TAIL=m+1, in parallel arrays.
    # node_op[x]: the operation of node x; ret_node[x]: for a call node, its return node (-1 for an
    # unknown operation, which never has to be linearized); is_ret[x]: True for return nodes.
    m = len(events)
    HEAD, TAIL = 0, m + 1
    nxt = list(range(1, m + 2)) + [TAIL]
    prv = [HEAD] + list(range(0, m + 1))
    node_op = [-1] * (m + 2)
    is_ret = [False] * (m + 2)
    ret_node = [-1] * (m + 2)
    call_node = [0] * n
    for x, (_, is_return, i) in enumerate(events, start=1):
        node_op[x] = i
        if is_return:
            is_ret[x] = True
            ret_node[call_node[i]] = x
        else:
            call_node[i] = x

    # The search proper. `remaining` counts completed operations not yet linearized: when it is
    # zero, every operation that must have taken effect has been placed and the history is
    # linearizable (unknown operations left over simply never took effect).
    remaining = sum(known)
    state = initial
    linearized = 0  # bitset of linearized operations
    cache = {(0, initial)}
    stack = []  # (call node, state before it) of the current partial linearization
    best_len = -1
    best_prefix: list = []
    best_state = initial
    stuck = -1
    steps = 0
    timed_out = False

    x = nxt[HEAD]
    while remaining:
        steps += 1
        if deadline is not None and steps % _CLOCK_EVERY == 0 and time.monotonic() > deadline:
            timed_out = True
            break
        if not is_ret[x]:
            # A call: can this operation take effect now, in `state`?
            i = node_op[x]
            k = kind[i]
            if k == _READ:
                ok, new = state == out[i], state
            elif k == _WRITE:
                ok, new = True, arg[i]
            elif k == _CAS:
                frm, to = arg[i]
                if not known[i]:
                    # Unknown: worth placing only where it would succeed; where it would fail it is
                    # a no-op, already covered by "never".
                    ok, new = state == frm, to
                elif out[i]:
                    ok, new = state == frm, to
                else:
                    ok, new = state != frm, state
            else:  # _DELETE
                o = out[i]
                ok = o is None or not known[i] or o == (state is not None)
                new = None
            if ok:
                lin2 = linearized | (1 << i)
                if (lin2, new) not in cache:
                    cache.add((lin2, new))
                    stack.append((x, state))
                    state, linearized = new, lin2
                    if known[i]:
                        remaining -= 1
                    # Lift the call and its return out of the list.
                    p, q = prv[x], nxt[x]
                    nxt[p] = q
                    prv[q] = p
                    r = ret_node[x]
                    if r >= 0:
                        p, q = prv[r], nxt[r]
                        nxt[p] = q
                        prv[q] = p
                    x = nxt[HEAD]
                    continue
            x = nxt[x]
        else:
            # A return before its call was linearized: this branch is dead. Remember the deepest
            # branch for the explanation, then backtrack.
            if len(stack) > best_len:
                best_len = len(stack)
                best_prefix = [node_op[c] for c, _ in stack]
                best_state = state
                stuck = node_op[x]
            if not stack:
                break
            x, state = stack.pop()
            i = node_op[x]
            linearized &= ~(1 << i)
            if known[i]:
                remaining += 1
            # Unlift, in the reverse order of the lift: the return first, then the call.
            r = ret_node[x]
            if r >= 0:
                nxt[prv[r]] = r
                prv[nxt[r]] = r
            nxt[prv[x]] = x
            prv[nxt[x]] = x
            x = nxt[x]

    elapsed = time.monotonic() - t0
    if timed_out:
        return KeyResult(key, "unknown", n, elapsed, len(cache),
                         "gave up after the time budget of %gs (%d states explored)"
                         % (time_budget_s, len(cache)))
    if remaining == 0:
        return KeyResult(key, "ok", n, elapsed, len(cache), "linearizable")

    prefix = [ops[i] for i in best_prefix]
    bad = ops[stuck]
    n_known = sum(known)
    placed = sum(1 for i in best_prefix if known[i])
    explanation = (
        "not linearizable: the longest linearizable prefix found places %d of %d completed "
        "operations (value then %s); no extension of it can place %s, which must take effect "
        "before it returns"
        % (placed, n_known, _show(best_state), bad.describe()))
    return KeyResult(key, "violation", n, elapsed, len(cache), explanation, prefix, bad)


# --------------------------------------------------------------------------------------------
# Whole histories: P-compositionality
# --------------------------------------------------------------------------------------------


def check(history: Iterable, model: str = "register", time_budget_s: Optional[float] = 30.0,
          initial: Hashable = None) -> Result:
    """Check a history against a model.

    history: operation records (Op, dict or tuple, see Op). model: "register" (one register, keys
    ignored) or "kv" (independent registers per key, None = missing, delete allowed). Each key has
    `time_budget_s` seconds (None: no limit). The verdict is "violation" if any key has one, else
    "unknown" if any key ran out of time, else "ok".
    """
    if model not in MODELS:
        raise ValueError("model must be one of %s, not %r" % (", ".join(MODELS), model))
    t0 = time.monotonic()
    ops = [_as_op(r) for r in history]
    for op in ops:
        _validate(op, model)

    # P-compositionality (Horn & Kroening 2015): one sub-history per key, checked alone.
    by_key: dict = {}
    for op in ops:
        by_key.setdefault(op.key if model == "kv" else None, []).append(op)

    per_key = {}
    for key in sorted(by_key, key=repr):  # a stable order, whatever the key types
        per_key[key] = check_key(by_key[key], key, time_budget_s, initial)

    bad = [r for r in per_key.values() if r.verdict == "violation"]
    unknown = [r for r in per_key.values() if r.verdict == "unknown"]
    if bad:
        verdict = "violation"
        parts = ["key %r: %s" % (r.key, r.explanation) if model == "kv" else r.explanation
                 for r in bad]
        explanation = "; ".join(parts)
    elif unknown:
        verdict = "unknown"
        explanation = "; ".join(("key %r: " % (r.key,) if model == "kv" else "") + r.explanation
                                for r in unknown)
    else:
        verdict = "ok"
        explanation = "linearizable (%d operations, %d key%s)" % (
            len(ops), len(per_key), "" if len(per_key) == 1 else "s")
    return Result(verdict, per_key, explanation, time.monotonic() - t0)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv: Optional[list] = None) -> int:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    # Import this module under its own name too: run as a script it is __main__, and Op objects
    # made by jepsen_log (which imports `linearizability`) must meet the same Op class.
    import linearizability as lin  # noqa: E402
    from jepsen_log import parse_jepsen_log  # noqa: E402

    ap = argparse.ArgumentParser(
        description="Check Jepsen etcd-style logs (single register) for linearizability.")
    ap.add_argument("files", nargs="+", metavar="FILE.log")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="time budget per key in seconds (default 60)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="on a violation, also print the longest linearizable prefix")
    a = ap.parse_args(argv)

    worst = 0
    for path in a.files:
        ops = parse_jepsen_log(path)
        r = lin.check(ops, model="register", time_budget_s=a.budget)
        print("%s: %s in %.3fs (%d operations) - %s"
              % (path, r.verdict, r.elapsed_s, len(ops), r.explanation))
        if a.verbose and r.verdict == "violation":
            for kr in r.per_key.values():
                for op in kr.longest_prefix:
                    print("    " + op.describe())
                if kr.stuck is not None:
                    print("  then stuck: " + kr.stuck.describe())
        worst = max(worst, {"ok": 0, "violation": 1, "unknown": 2}[r.verdict])
    return worst


if __name__ == "__main__":
    sys.exit(main())
