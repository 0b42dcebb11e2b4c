"""Metrics (issue 15): a running 3-node cluster, each node serving GET /metrics from its own
loop (metrics_address), scraped with a plain HTTP client (urllib, http.client, raw sockets) and
the text parsed by the rules of the Prometheus text format; node.metrics() gives the same
families; every family the nodes export is documented in docs/metrics.md, and every one the
page lists is exported."""

import http.client
import os
import re
import socket
import urllib.request

import pytest

import craft

from conftest import Cluster, cmd, free_ports, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text, openmetrics=False):
    """{family: {"type", "help", "samples": [(name, labels, value)]}}, checking the format:
    every sample belongs to a family declared by # HELP and # TYPE before it, every value is a
    number, no family is declared twice."""
    families, current = {}, None
    lines = text.split("\n")
    assert lines[-1] == "", "the text ends with a newline"
    if openmetrics:
        assert lines[-2] == "# EOF"
        lines = lines[:-2]
    for line in lines[:-1] if not openmetrics else lines:
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert name not in families, f"{name} declared twice"
            families[name] = {"help": help_, "type": None, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name == current and kind in ("counter", "gauge", "histogram"), line
            families[name]["type"] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample: {line!r}"
            name, labels, value = m.group(1), dict(LABEL.findall(m.group(3) or "")), m.group(4)
            float(value)
            fam = families[current]
            base = current if not openmetrics or fam["type"] != "counter" else current
            assert name == base or name.startswith(base + "_"), (name, current)
            fam["samples"].append((name, labels, float(value)))
    return families


def value(families, name, **labels):
    for fam in families.values():
        for n, l, v in fam["samples"]:
            if n == name and all(l.get(k) == str(x) for k, x in labels.items()):
                return v
    return None


@pytest.fixture
def metered(tmp_path):
    # Three nodes, each serving /metrics on a port of its own (port 0: the runtime picks).
    c = Cluster(tmp_path, n=0)
    c.peers = {i: f"127.0.0.1:{p}" for i, p in zip((1, 2, 3), free_ports(3))}
    for i in c.peers:
        c.start(i, metrics_address="127.0.0.1:0")
    yield c
    c.close()


def scrape(node):
    with urllib.request.urlopen(f"http://{node.metrics_address}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def test_scrape_a_three_node_cluster(metered):
    leader = metered.nodes[metered.leader()]
    for k in range(20):
        leader.apply(cmd("set", f"k{k}", k))
    leader.snapshot()
    wait_until(lambda: all(n.status()["applied"] >= leader.status()["commit"]
                           for n in metered.nodes.values()), 10, "every node applied")
    for i, node in metered.nodes.items():
        text = scrape(node)
        fams = parse(text)
        assert len(fams) > 40
        for name, fam in fams.items():
            assert fam["type"] is not None and fam["help"], name
        is_leader = node is leader
        assert value(fams, "craft_is_leader") == (1 if is_leader else 0)
        assert value(fams, "craft_role", role="leader") == (1 if is_leader else 0)
        assert value(fams, "craft_info", id=i) == 1
        assert value(fams, "craft_has_quorum") == 1
        assert value(fams, "craft_voters") == 3
        assert value(fams, "craft_commit_index") >= 21
        assert value(fams, "craft_entries_applied_total") >= 20
        assert value(fams, "craft_fsync_seconds_count") > 0
        assert value(fams, "craft_apply_batch_seconds_count") > 0
        # Histograms: cumulative buckets up to +Inf, which is the count.
        for h in ("craft_fsync_seconds", "craft_apply_batch_seconds",
                  "craft_commit_latency_seconds"):
            buckets = [v for n, l, v in fams[h]["samples"] if n == h + "_bucket"]
            assert buckets == sorted(buckets) and buckets[-1] == value(fams, h + "_count")
        others = [j for j in metered.nodes if j != i]
        # Per peer and type: the leader sends AppendEntries to each follower and hears their
        # results; a follower, the other way round.
        lead_id = leader.id
        for j in (others if is_leader else [lead_id]):
            out_type = "AppendEntries" if is_leader else "AppendEntriesResult"
            in_type = "AppendEntriesResult" if is_leader else "AppendEntries"
            sent = value(fams, "craft_messages_sent_total", peer=j, type=out_type)
            assert sent is not None and sent > 0, (i, j, out_type)
            assert value(fams, "craft_sent_bytes_total", peer=j, type=out_type) > sent
            assert value(fams, "craft_messages_received_total", peer=j, type=in_type) > 0
            assert value(fams, "craft_received_bytes_total", peer=j, type=in_type) > 0
        for j in others:
            assert value(fams, "craft_peer_connected", peer=j) == 1
        if is_leader:
            assert value(fams, "craft_proposals_total") == 20
            assert value(fams, "craft_snapshots_taken_total") == 1
            assert value(fams, "craft_commit_latency_seconds_count") > 0
            assert value(fams, "craft_elections_won_total") == 1
            for j in others:
                assert value(fams, "craft_peer_state", peer=j, state="replicate") == 1
                assert value(fams, "craft_peer_lag_entries", peer=j) == 0
        else:
            assert value(fams, "craft_proposals_total") == 0
            assert value(fams, "craft_peer_match_index", peer=others[0]) is None  # leader only
        # The same families through node.metrics(), without HTTP.
        assert set(parse(node.metrics())) == set(fams)


def test_openmetrics_when_asked(metered):
    node = metered.nodes[1]
    conn = http.client.HTTPConnection(*node.metrics_address.split(":"), timeout=10)
    conn.request("GET", "/metrics", headers={"Accept": "application/openmetrics-text; "
                                                      "version=1.0.0; charset=utf-8"})
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 200 and r.getheader("Content-Type").startswith(
        "application/openmetrics-text")
    fams = parse(body, openmetrics=True)
    # Counters: the family without _total, the samples with it.
    assert fams["craft_proposals"]["type"] == "counter"
    assert fams["craft_proposals"]["samples"][0][0] == "craft_proposals_total"
    assert set(parse(node.metrics(openmetrics=True), openmetrics=True)) == set(fams)


def test_bad_requests_are_answered_and_the_node_goes_on(metered):
    node = metered.nodes[2]
    host, port = node.metrics_address.split(":")
    for request, status in [(b"POST /metrics HTTP/1.1\r\n\r\n", b"405"),
                            (b"GET / HTTP/1.1\r\n\r\n", b"404"),
                            (b"\x00\x01\x02garbage\r\n\r\n", b"400"),
                            (b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 10000, b"431")]:
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(request)
            answer = s.recv(100)
        assert answer.startswith(b"HTTP/1.1 " + status), (request[:20], answer)
    assert scrape(node)
    metered.nodes[metered.leader()].apply(cmd("set", "still", 1))


def test_every_metric_is_documented(metered):
    doc = open(os.path.join(ROOT, "docs", "metrics.md"), encoding="utf-8").read()
    documented = {name for line in doc.splitlines() if line.startswith("| `craft_")
                  for name in re.findall(r"`(craft_[a-z_]+)", line.split("|")[1])}
    # A family is documented under its sample name (counters with _total; a histogram's
    # family name; several gauges on one line as `a`, `b`).
    leader = metered.nodes[metered.leader()]
    exported = set()
    for name, fam in parse(leader.metrics()).items():
        exported.add(name)
    missing = {n for n in exported if n not in documented}
    assert not missing, f"metrics not in docs/metrics.md: {sorted(missing)}"
    stale = {n for n in documented if n not in exported and
             n.rsplit("_", 1)[0] not in exported}
    assert not stale, f"docs/metrics.md lists metrics nobody exports: {sorted(stale)}"


def test_a_metrics_address_in_use_is_named(tmp_path):
    port = free_ports(1)[0]
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen(1)
    try:
        addr = f"127.0.0.1:{free_ports(1)[0]}"
        node = craft.Node(1, addr, str(tmp_path / "n1"), craft.StateMachine(),
                          peers={1: addr}, metrics_address=f"127.0.0.1:{port}")
        with pytest.raises(craft.Error, match="metrics_address"):
            node.start()
    finally:
        holder.close()
    with pytest.raises(craft.ConfigError, match="metrics_address"):
        craft.Node(1, "127.0.0.1:0", str(tmp_path / "n2"), craft.StateMachine(),
                   peers={1: "127.0.0.1:0"}, metrics_address="localhost")
