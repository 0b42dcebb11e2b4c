package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// node is one hashicorp/raft server set up the way its users set one up (Consul, Vault's raft
// backend): BoltDB for the log and the stable store, a log cache in front, file snapshots, here
// over the library's own TCP transport; or the library's in-memory stores for the nosync runs.
type node struct {
	r *raft.Raft
}

func startNode(a args) (*node, error) {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   fmt.Sprintf("raft-%d", a.id),
		Level:  hclog.Warn,
		Output: os.Stderr,
	})
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(strconv.Itoa(a.id))
	conf.Logger = logger
	// hashicorp/raft has no heartbeat interval of its own: a leader heartbeats every
	// HeartbeatTimeout/10 (randomized up to 2x), and a follower stands for election after a
	// random time in [HeartbeatTimeout, 2*HeartbeatTimeout) without contact. The driver's
	// election timeout is therefore HeartbeatTimeout (and ElectionTimeout, the candidate's);
	// with the driver's settings (hb = et/10) the heartbeat interval matches too.
	et := time.Duration(a.et) * time.Millisecond
	conf.HeartbeatTimeout = et
	conf.ElectionTimeout = et
	// The default lease is half the default heartbeat timeout; keep that ratio.
	conf.LeaderLeaseTimeout = et / 2
	if a.hb*10 != a.et {
		logger.Warn("heartbeat interval is fixed at HeartbeatTimeout/10", "hb_ms", a.hb, "et_ms", a.et)
	}
	// The snapshot policy of the other nodes of the benchmark: every 16,384 entries, keeping
	// 1,024. hashicorp/raft checks the threshold every SnapshotInterval (randomized up to 2x),
	// 120 s by default, which a benchmark point never reaches: check every second instead.
	conf.SnapshotThreshold = 16384
	conf.TrailingLogs = 1024
	conf.SnapshotInterval = time.Second

	var (
		logs   raft.LogStore
		stable raft.StableStore
		snaps  raft.SnapshotStore
	)
	if a.sync {
		// Durable: raft-boltdb syncs every batch of entries before it returns (bbolt commit
		// with NoSync off), the stable store (term, vote) lives in the same file.
		bolt, err := raftboltdb.NewBoltStore(filepath.Join(a.dir, "raft.db"))
		if err != nil {
			return nil, fmt.Errorf("raft-boltdb: %w", err)
		}
		// Consul and Vault's raft backend keep 512 recent entries in front of BoltDB.
		cache, err := raft.NewLogCache(512, bolt)
		if err != nil {
			return nil, err
		}
		logs, stable = cache, bolt
		fss, err := raft.NewFileSnapshotStoreWithLogger(a.dir, 2, logger)
		if err != nil {
			return nil, fmt.Errorf("snapshot store: %w", err)
		}
		snaps = fss
	} else {
		// nosync: the library's in-memory stores; nothing reaches a disk.
		mem := raft.NewInmemStore()
		logs, stable = mem, mem
		snaps = raft.NewInmemSnapshotStore()
	}

	addr := fmt.Sprintf("127.0.0.1:%d", a.ports[a.id-1])
	trans, err := raft.NewTCPTransportWithLogger(addr, nil, 3, 10*time.Second, logger)
	if err != nil {
		return nil, fmt.Errorf("transport on %s: %w", addr, err)
	}

	// Every server is bootstrapped with the same three voters, as the craft and canonical/raft
	// nodes are; a server restarted on its data keeps its state.
	has, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return nil, fmt.Errorf("reading the existing state: %w", err)
	}
	if !has {
		var cfg raft.Configuration
		for i, p := range a.ports {
			cfg.Servers = append(cfg.Servers, raft.Server{
				Suffrage: raft.Voter,
				ID:       raft.ServerID(strconv.Itoa(i + 1)),
				Address:  raft.ServerAddress(fmt.Sprintf("127.0.0.1:%d", p)),
			})
		}
		if err := raft.BootstrapCluster(conf, logs, stable, snaps, trans, cfg); err != nil {
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(conf, &counter{}, logs, stable, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("raft: %w", err)
	}
	return &node{r: r}, nil
}

// ---- what the driver protocol needs (proto.go's library) -----------------------------------

func (n *node) propose(cmd []byte, timeout time.Duration) error {
	f := n.r.Apply(cmd, timeout)
	if err := f.Error(); err != nil {
		return err
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

func (n *node) status() string {
	role := byte('U')
	switch n.r.State() {
	case raft.Leader:
		role = 'L'
	case raft.Follower:
		role = 'F'
	case raft.Candidate:
		role = 'C'
	}
	_, id := n.r.LeaderWithID()
	leader, _ := strconv.ParseUint(string(id), 10, 64)
	return fmt.Sprintf("role=%c term=%d leader=%d applied=%d last=%d", role, n.r.CurrentTerm(),
		leader, n.r.AppliedIndex(), n.r.LastIndex())
}

func (n *node) isLeader() bool {
	return n.r.State() == raft.Leader
}

// canProbe: Apply works on the leader only (a follower answers ErrNotLeader; hashicorp/raft does
// not forward), as with canonical/raft.
func (n *node) canProbe() bool {
	return n.isLeader()
}

func (n *node) counters() (fsyncs, entries int64) {
	return -1, -1
}
