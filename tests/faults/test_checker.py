"""Tests of the linearizability checker (linearizability.py) and the Jepsen log parser.

The reference: 70 histories recorded by Jepsen against etcd, with verdicts in
tests/faults/data/jepsen-etcd/EXPECTED (from anishathalye/porcupine; source, commit and licence in
the README there). The checker must agree with every one. Then small hand-written histories, one per rule, and a randomized cross-check against a
brute-force checker that tries every order.
"""

import dataclasses
import itertools
import os
import random
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import linearizability as lin  # noqa: E402
from jepsen_log import parse_jepsen_lines, parse_jepsen_log, parse_value  # noqa: E402
from linearizability import Op, check  # noqa: E402

# Inside the repository: a test reads nothing from outside it (a fresh clone runs alone).
DATA = os.path.join(HERE, "data", "jepsen-etcd")
MISSING = ("Jepsen etcd histories not found at %s (EXPECTED and etcd_NNN.log are part of the "
           "repository: is the checkout complete?)" % DATA)


# --------------------------------------------------------------------------------------------
# The 70 Jepsen etcd verdicts
# --------------------------------------------------------------------------------------------


def _expected():
    path = os.path.join(DATA, "EXPECTED")
    if not os.path.isfile(path):
        return [pytest.param(None, None, id="jepsen-etcd-data-missing")]
    with open(path) as f:
        rows = [line.split() for line in f if line.strip()]
    return [pytest.param(name, verdict, id=name) for name, verdict in rows]


def test_jepsen_data_is_complete():
    if not os.path.isfile(os.path.join(DATA, "EXPECTED")):
        pytest.fail(MISSING)
    rows = [p.values for p in _expected()]
    assert len(rows) == 70, "EXPECTED should list 70 histories, found %d" % len(rows)
    assert {v for _, v in rows} == {"linearizable", "not-linearizable"}
    for name, _ in rows:
        assert os.path.isfile(os.path.join(DATA, name)), name


@pytest.mark.parametrize("name,expected", _expected())
def test_jepsen_etcd_verdict(name, expected):
    if name is None:
        pytest.fail(MISSING)
    ops = parse_jepsen_log(os.path.join(DATA, name))
    assert len(ops) > 50
    # The budget is a backstop far above the real cost (the slowest takes about a second).
    r = check(ops, model="register", time_budget_s=30)
    want = {"linearizable": "ok", "not-linearizable": "violation"}[expected]
    assert r.verdict == want, "%s: expected %s, got %s (%s)" % (name, want, r.verdict,
                                                               r.explanation)
    if r.verdict == "violation":
        kr = r.per_key[None]
        assert kr.stuck is not None and kr.stuck.known
        assert "no extension of it can place" in r.explanation


# --------------------------------------------------------------------------------------------
# The Jepsen log parser
# --------------------------------------------------------------------------------------------

SAMPLE = """\
2015-05-11 12:00:00,001{GMT}	INFO  jepsen.util - 0	:invoke	:read	nil
INFO  jepsen.util - 1	:invoke	:write	4
INFO  jepsen.util - :nemesis	:info	:start	nil
INFO  jepsen.util - 0	:ok	:read	nil
INFO  jepsen.util - 2	:invoke	:cas	[4 1]
INFO  jepsen.util - 1	:info	:write	:timed-out
INFO  jepsen.util - 2	:fail	:cas	[4 1]

some unrelated line
INFO  jepsen.util - 6	:invoke	:cas	[0 2]
INFO  jepsen.util - 0	:invoke	:read	nil
INFO  jepsen.util - 0	:ok	:read	3
INFO  jepsen.util - 6	:info	:cas	:timed-out
INFO  jepsen.util - 2	:invoke	:cas	[3 3]
INFO  jepsen.util - 2	:ok	:cas	[3 3]
INFO  jepsen.util - 11	:invoke	:write	0
"""


def test_parser_maps_every_kind_of_line():
    ops = parse_jepsen_lines(SAMPLE.splitlines())
    assert ops == [
        Op(0, 1, 4, "read", None, None),  # nil read, despite the timestamp in front
        Op(1, 2, None, "write", 4, None),  # :info :timed-out -> unknown outcome
        Op(2, 5, 7, "cas", (4, 1), False),  # :fail cas -> the compare did not match
        Op(6, 10, None, "cas", (0, 2), None),
        Op(0, 11, 12, "read", None, 3),
        Op(2, 14, 15, "cas", (3, 3), True),
        Op(11, 16, None, "write", 0, None),  # never completed -> unknown
    ]


def test_parser_values_and_errors():
    assert parse_value("nil") is None
    assert parse_value("-12") == -12
    assert parse_value("[3 0]") == (3, 0)
    assert parse_value(":timed-out") == ":timed-out"
    assert parse_value('"a b"') == "a b"
    with pytest.raises(ValueError, match="without an invocation"):
        parse_jepsen_lines(["INFO  jepsen.util - 3\t:ok\t:read\t1"])
    # A failed read or write did not happen: it is dropped.
    assert parse_jepsen_lines(["INFO  jepsen.util - 3\t:invoke\t:write\t1",
                               "INFO  jepsen.util - 3\t:fail\t:write\t1"]) == []


def test_cli(capsys):
    if not os.path.isdir(DATA):
        pytest.fail(MISSING)
    assert lin.main([os.path.join(DATA, "etcd_002.log")]) == 0
    assert lin.main([os.path.join(DATA, "etcd_000.log")]) == 1
    out = capsys.readouterr().out
    assert "etcd_002.log: ok" in out and "etcd_000.log: violation" in out


# --------------------------------------------------------------------------------------------
# Hand-written histories. Op(process, call, ret, kind, input, output[, key]); ret=None: unknown.
# --------------------------------------------------------------------------------------------


def W(p, c, r, v, key=None):
    return Op(p, c, r, "write", v, None, key)


def R(p, c, r, v, key=None):
    return Op(p, c, r, "read", None, v, key)


def CAS(p, c, r, frm, to, ok, key=None):
    return Op(p, c, r, "cas", (frm, to), ok, key)


def DEL(p, c, r, existed=None, key=None):
    return Op(p, c, r, "delete", None, existed, key)


def verdict(ops, model="register", **kw):
    return check(ops, model=model, **kw).verdict


def test_linearizable_history():
    h = [R(0, 0, 1, None), W(0, 2, 3, 1), R(1, 4, 5, 1), W(1, 6, 9, 2), R(0, 7, 8, 1),
         R(0, 10, 11, 2)]
    r = check(h)
    assert r.verdict == "ok" and r.ok
    assert r.per_key[None].ops == 6


def test_empty_history():
    assert verdict([]) == "ok"


def test_stale_read_is_a_violation():
    # write 1, then write 2 completes, then a read that starts afterwards still sees 1.
    h = [W(0, 0, 1, 1), W(1, 2, 3, 2), R(2, 4, 5, 1)]
    r = check(h)
    assert r.verdict == "violation"
    kr = r.per_key[None]
    assert kr.stuck == h[2]
    assert [op.input for op in kr.longest_prefix] == [1, 2]
    assert "read -> 1" in r.explanation


def test_concurrent_operations_may_go_either_way():
    # A read concurrent with a write may see the old or the new value.
    assert verdict([W(0, 0, 1, 1), W(1, 2, 10, 2), R(2, 3, 4, 1)]) == "ok"
    assert verdict([W(0, 0, 1, 1), W(1, 2, 10, 2), R(2, 3, 4, 2)]) == "ok"
    # Two concurrent writes: later reads may see either, but then the value is fixed.
    both = [W(0, 0, 10, 1), W(1, 0, 10, 2)]
    assert verdict(both + [R(2, 11, 12, 2), R(2, 13, 14, 2)]) == "ok"
    assert verdict(both + [R(2, 11, 12, 1), R(2, 13, 14, 1)]) == "ok"
    assert verdict(both + [R(2, 11, 12, 1), R(2, 13, 14, 2)]) == "violation"
    # New-old inversion: once a read saw the new value, a later read cannot see the old one,
    # even though both overlap the write.
    assert verdict([W(0, 0, 100, 1), R(1, 10, 20, 1), R(2, 30, 40, None)]) == "violation"
    assert verdict([W(0, 0, 100, 1), R(1, 10, 20, None), R(2, 30, 40, 1)]) == "ok"
    # Equal times count as concurrent (the permissive reading).
    assert verdict([W(0, 0, 5, 1), R(1, 5, 6, None)]) == "ok"


def test_unknown_write_may_take_effect_late_or_never():
    w = W(0, 5, None, 1)  # timed out: unknown outcome
    # Long after the timeout it is still not visible, then it is: it took effect late.
    assert verdict([w, R(1, 10, 11, None), R(1, 20, 21, None), R(1, 30, 31, 1)]) == "ok"
    # Never visible: it never took effect.
    assert verdict([w, R(1, 10, 11, None), R(1, 90, 91, None)]) == "ok"
    # But not before its call ...
    assert verdict([R(1, 0, 1, 1), w]) == "violation"
    # ... and once it took effect, it cannot be undone.
    assert verdict([w, R(1, 10, 11, 1), R(1, 20, 21, None)]) == "violation"
    # It may also take effect between two later writes.
    h = [w, W(1, 10, 11, 2), R(1, 12, 13, 1), W(1, 14, 15, 3), R(1, 16, 17, 3)]
    assert verdict(h) == "ok"
    # An unknown read constrains nothing, whatever it "returned".
    assert verdict([W(0, 0, 1, 1), Op(1, 2, None, "read", None, 7)]) == "ok"


def test_unknown_cas():
    # An unknown cas takes effect only where it would succeed, or never.
    base = [W(0, 0, 1, 1), CAS(1, 2, None, 1, 2, None)]
    assert verdict(base + [R(0, 3, 4, 1), R(0, 5, 6, 2)]) == "ok"
    assert verdict(base + [R(0, 3, 4, 1), R(0, 5, 6, 1)]) == "ok"
    assert verdict(base + [W(0, 3, 4, 3), R(0, 5, 6, 2)]) == "violation"  # 3 != 1: cannot apply


def test_cas_semantics():
    assert verdict([W(0, 0, 1, 1), CAS(0, 2, 3, 1, 2, True), R(0, 4, 5, 2)]) == "ok"
    # A successful cas needs the expected value, a failed one needs another value.
    assert verdict([W(0, 0, 1, 1), CAS(0, 2, 3, 2, 3, True)]) == "violation"
    assert verdict([W(0, 0, 1, 1), CAS(0, 2, 3, 1, 2, False)]) == "violation"
    assert verdict([W(0, 0, 1, 1), CAS(0, 2, 3, 5, 2, False), R(0, 4, 5, 1)]) == "ok"
    # A failed cas leaves the value alone.
    assert verdict([W(0, 0, 1, 1), CAS(0, 2, 3, 5, 2, False), R(0, 4, 5, 2)]) == "violation"
    # The initial value is nil: a cas from 0 fails, a cas from nil succeeds.
    assert verdict([CAS(0, 0, 1, 0, 1, True)]) == "violation"
    assert verdict([CAS(0, 0, 1, None, 1, True), R(0, 2, 3, 1)]) == "ok"
    # Two concurrent cas 1->2 cannot both succeed; one of them may.
    h = [W(0, 0, 1, 1), CAS(1, 2, 5, 1, 2, True), CAS(2, 2, 5, 1, 2, True)]
    assert verdict(h) == "violation"
    h = [W(0, 0, 1, 1), CAS(1, 2, 5, 1, 2, True), CAS(2, 2, 5, 1, 2, False)]
    assert verdict(h) == "ok"


def test_kv_model_is_checked_per_key():
    h = [
        W(0, 0, 1, 1, key="a"), R(1, 0, 1, None, key="b"),
        W(0, 2, 3, 5, key="b"), R(1, 2, 3, 1, key="a"),
        CAS(0, 4, 5, 5, 6, True, key="b"), DEL(1, 4, 5, True, key="a"),
        R(0, 6, 7, None, key="a"), R(1, 6, 7, 6, key="b"),
        DEL(0, 8, 9, False, key="a"), DEL(1, 8, 9, None, key="c"),
        CAS(0, 10, 11, None, 7, True, key="a"), R(1, 10, 11, None, key="c"),
    ]
    r = check(h, model="kv")
    assert r.verdict == "ok", r.explanation
    assert set(r.per_key) == {"a", "b", "c"}
    assert all(k.verdict == "ok" for k in r.per_key.values())
    # The same operations read as one register are not linearizable: keys are independent.
    no_delete = [op for op in h if op.kind != "delete"]
    assert verdict(no_delete, model="register") == "violation"

    # A stale read on key b only: b is the violation, the others stay ok.
    bad = h + [R(2, 12, 13, 5, key="b")]
    r = check(bad, model="kv")
    assert r.verdict == "violation"
    assert r.per_key["b"].verdict == "violation"
    assert r.per_key["a"].verdict == r.per_key["c"].verdict == "ok"
    assert "key 'b'" in r.explanation


def test_kv_delete_semantics():
    assert verdict([W(0, 0, 1, 1, "k"), DEL(0, 2, 3, None, "k"), R(0, 4, 5, None, "k")],
                   model="kv") == "ok"
    assert verdict([W(0, 0, 1, 1, "k"), DEL(0, 2, 3, None, "k"), R(0, 4, 5, 1, "k")],
                   model="kv") == "violation"
    # delete reporting whether the key existed
    assert verdict([DEL(0, 0, 1, True, "k")], model="kv") == "violation"
    assert verdict([W(0, 0, 1, 1, "k"), DEL(0, 2, 3, False, "k")], model="kv") == "violation"
    # an unknown delete may happen late
    assert verdict([W(0, 0, 1, 1, "k"), DEL(1, 2, None, None, "k"), R(0, 5, 6, 1, "k"),
                    R(0, 7, 8, None, "k")], model="kv") == "ok"
    with pytest.raises(ValueError, match="kv model"):
        check([DEL(0, 0, 1)], model="register")
    with pytest.raises(ValueError, match="model must be"):
        check([], model="queue")


def test_time_budget_gives_unknown_on_a_pathological_history():
    # 40 concurrent writes of distinct values and a read concurrent with all of them that returns
    # a value written only after the read returned: impossible, but proving it means trying every
    # subset of the writes (2^40 with memoisation). The budget must stop it.
    n = 40
    h = [W(p, 0, 100, p + 10) for p in range(n)]
    h += [R(n, 1, 99, 1), W(n, 200, 201, 1)]
    budget = 0.5
    t0 = time.monotonic()
    r = check(h, time_budget_s=budget)
    took = time.monotonic() - t0
    assert r.verdict == "unknown", r.explanation
    assert r.per_key[None].verdict == "unknown"
    assert "time budget" in r.explanation
    assert took < budget + 2.0
    # An unknown key does not hide a violation on another key.
    kv = [dataclasses.replace(op, key="slow") for op in h]
    kv += [W(0, 0, 1, 1, "x"), W(0, 2, 3, 2, "x"), R(0, 4, 5, 1, "x")]
    r = check(kv, model="kv", time_budget_s=0.2)
    assert r.verdict == "violation"
    assert r.per_key["slow"].verdict == "unknown"


def test_input_records_may_be_tuples_or_dicts():
    h = [(0, 0, 1, "write", 1, None), dict(process=1, call=2, ret=3, kind="read", output=1)]
    assert verdict(h) == "ok"


# --------------------------------------------------------------------------------------------
# Randomized cross-check against a brute-force checker
# --------------------------------------------------------------------------------------------


def _brute_force(ops, model):
    """Try every subset of the unknown operations and every order of the chosen ones."""
    ops = list(ops)
    known = [op for op in ops if op.known]
    unknown = [op for op in ops if not op.known]
    inf = float("inf")
    for k in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, k):
            for perm in itertools.permutations(known + list(chosen)):
                # real-time order: nothing may come after an operation that returned before it
                # was called
                if any((b.ret if b.known else inf) < a.call
                       for ai, a in enumerate(perm) for b in perm[ai + 1:]):
                    continue
                states = {}
                good = True
                for op in perm:
                    st = states.get(op.key)
                    if op.kind == "read":
                        good = st == op.output
                    elif op.kind == "write":
                        states[op.key] = op.input
                    elif op.kind == "cas":
                        frm, to = op.input
                        if not op.known or op.output:
                            good = st == frm
                            states[op.key] = to
                        else:
                            good = st != frm
                    else:
                        good = op.output is None or not op.known or op.output == (st is not None)
                        states[op.key] = None
                    if not good:
                        break
                if good:
                    return "ok"
    return "violation"


def _random_history(rng, n, model):
    keys = ["a", "b"] if model == "kv" else [None]
    kinds = ["read", "write", "cas"] + (["delete"] if model == "kv" else [])
    ops = []
    for p in range(n):
        call = rng.randrange(0, 20)
        ret = None if rng.random() < 0.2 else call + rng.randrange(0, 8)
        kind = rng.choice(kinds)
        inp = out = None
        if kind == "read":
            out = rng.choice([None, 1, 2])
        elif kind == "write":
            inp = rng.choice([1, 2])
        elif kind == "cas":
            inp = (rng.choice([None, 1, 2]), rng.choice([1, 2]))
            out = rng.random() < 0.5
        else:
            out = rng.choice([None, True, False])
        ops.append(Op(p, call, ret, kind, inp, out, rng.choice(keys)))
    return ops


@pytest.mark.parametrize("model", ["register", "kv"])
def test_agrees_with_brute_force_on_random_histories(model):
    rng = random.Random(20240601 if model == "register" else 7)
    seen = {"ok": 0, "violation": 0}
    for _ in range(400):
        h = _random_history(rng, rng.randrange(1, 7), model)
        want = _brute_force(h, model)
        got = check(h, model=model).verdict
        assert got == want, "history %r: checker %s, brute force %s" % (h, got, want)
        seen[got] += 1
    # the generator exercises both outcomes
    assert seen["ok"] > 50 and seen["violation"] > 50, seen
