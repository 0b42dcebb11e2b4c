package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/raft"
)

// counter is the state machine of every bench-cluster node: a command is 'i', an 8-byte
// little-endian increment, then padding (bench/peers/proto.h, bn_make_cmd). hashicorp/raft calls
// Apply, Snapshot and Restore from its one FSM goroutine, so the value needs no lock.
type counter struct {
	value uint64
}

// errMalformed is what Apply returns for a command that is not an increment; the proposer reads
// it from the future's Response and counts the proposal as failed.
type errMalformed struct {
	index uint64
	size  int
}

func (e errMalformed) Error() string {
	return fmt.Sprintf("apply: unexpected command of %d bytes at index %d", e.size, e.index)
}

func (c *counter) Apply(l *raft.Log) interface{} {
	d := l.Data
	if len(d) < 9 || d[0] != 'i' {
		err := errMalformed{l.Index, len(d)}
		fmt.Fprintf(os.Stderr, "hashicorp-raft node: %v\n", err)
		return err
	}
	c.value += binary.LittleEndian.Uint64(d[1:9])
	return c.value
}

func (c *counter) Snapshot() (raft.FSMSnapshot, error) {
	return counterSnapshot(c.value), nil
}

func (c *counter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [8]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return fmt.Errorf("restore: the snapshot is not an 8-byte counter: %w", err)
	}
	c.value = binary.LittleEndian.Uint64(b[:])
	return nil
}

// counterSnapshot is the value at the snapshot's index; Persist runs on another goroutine.
type counterSnapshot uint64

func (s counterSnapshot) Persist(sink raft.SnapshotSink) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(s))
	if _, err := sink.Write(b[:]); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s counterSnapshot) Release() {}
