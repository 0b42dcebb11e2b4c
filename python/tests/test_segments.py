"""segment_size: the WAL segment size of a node's durable store (issue 18).

Each segment file is preallocated to segment_size when it is created, so the option is what a
node costs on disk before it has written anything: 64 MiB by default, a few KiB in tests."""

import glob
import os

import pytest

import craft

from conftest import KV, cmd, free_ports, wait_until


def segments(data_dir):
    return sorted(glob.glob(os.path.join(data_dir, "wal-*.seg")))


def solo(tmp_path, name, **options):
    port = free_ports(1)[0]
    addr = f"127.0.0.1:{port}"
    return craft.Node(1, addr, str(tmp_path / name), KV(), peers={1: addr},
                      election_timeout_ms=100, **options)


def test_a_segment_is_preallocated_to_segment_size(tmp_path):
    size = 256 * 1024
    with solo(tmp_path, "n", segment_size=size) as node:  # fsync on: really allocated
        wait_until(lambda: node.is_leader, 5, "leadership")
        node.apply(cmd("set", "a", 1))
    segs = segments(str(tmp_path / "n"))
    assert segs, "no WAL segment was written"
    assert [os.path.getsize(s) for s in segs] == [size] * len(segs)


def test_sizes_are_rounded_up_to_4_kib(tmp_path):
    with solo(tmp_path, "n", segment_size=5000, fsync=False) as node:
        wait_until(lambda: node.is_leader, 5, "leadership")
        node.apply(cmd("set", "a", 1))
    assert {os.path.getsize(s) for s in segments(str(tmp_path / "n"))} == {8192}


def test_the_default_stays_64_mib(tmp_path):
    with solo(tmp_path, "n", fsync=False) as node:  # fsync off: sparse, no disk used
        wait_until(lambda: node.is_leader, 5, "leadership")
        node.apply(cmd("set", "a", 1))
    assert {os.path.getsize(s) for s in segments(str(tmp_path / "n"))} == {64 << 20}


def test_small_segments_rotate_and_reopen(tmp_path):
    value = "v" * 1000
    with solo(tmp_path, "n", segment_size=4096, fsync=False, snapshot_entries=0) as node:
        wait_until(lambda: node.is_leader, 5, "leadership")
        for i in range(40):
            node.apply(cmd("set", f"k{i}", value))
    assert len(segments(str(tmp_path / "n"))) >= 8  # ~1 KiB records, 4 KiB segments
    # The log spread over many segments comes back whole.
    with solo(tmp_path, "n", segment_size=4096, fsync=False, snapshot_entries=0) as node:
        wait_until(lambda: node.is_leader, 5, "leadership")
        node.apply(cmd("set", "last", 1))
        data = node.read(lambda f: dict(f.data))
    assert data == dict({f"k{i}": value for i in range(40)}, last=1)


@pytest.mark.parametrize("bad", [0, 4095, (1 << 30) + 1, -1, 2 ** 64, "1M", 1.5, True])
def test_segment_size_out_of_range_is_refused(tmp_path, bad):
    with pytest.raises(craft.ConfigError) as info:
        craft.Node(1, "127.0.0.1:0", str(tmp_path), KV(), join=True, segment_size=bad)
    msg = str(info.value)
    assert "segment_size" in msg and "4096" in msg and "1073741824" in msg, msg


# None, like every option left out, is the default (64 MiB).
@pytest.mark.parametrize("good", [4096, 1 << 20, 1 << 30, None])
def test_segment_size_bounds_are_accepted(tmp_path, good):
    craft.Node(1, "127.0.0.1:0", str(tmp_path), KV(), join=True, segment_size=good).close()
