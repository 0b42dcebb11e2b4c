// Command peer-hashicorp-raft is the hashicorp/raft peer of bench-cluster (bench/cluster_bench.c):
// one server of a 3-server cluster with a counter state machine, driven over stdin/stdout by the
// protocol of bench/peers/proto.h (proto.go here), like the canonical/raft peer
// (bench/peers/canonical_raft.c).
//
// A Go module of its own, outside the project's build: bench-cluster builds it at run time when
// Go is installed (see docs/benchmarks.md) with
//
//	cd bench/peers/hashicorp && GOTOOLCHAIN=local go build -o <build dir>/peer-hashicorp-raft .
//
// and runs it as `peer-hashicorp-raft node --id I --dir DIR --ports P1,P2,P3 --sync 0|1 --hb MS
// --et MS`. --sync 1: raft-boltdb (durable); --sync 0: the in-memory stores (nosync).
// `peer-hashicorp-raft version` prints the module versions it was built with.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// args is bn_args of proto.h.
type args struct {
	id     int
	dir    string
	ports  []int
	sync   bool
	hb, et int
}

// atoi is C's atoi: 0 for what is not a number.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// parseArgs reads the command line as bn_parse_args does.
func parseArgs(argv []string) (args, error) {
	a := args{sync: true, hb: 50, et: 500}
	for i := 1; i+1 < len(argv); i++ {
		switch argv[i] {
		case "--id":
			i++
			a.id = atoi(argv[i])
		case "--dir":
			i++
			a.dir = argv[i]
		case "--sync":
			i++
			a.sync = atoi(argv[i]) != 0
		case "--hb":
			i++
			a.hb = atoi(argv[i])
		case "--et":
			i++
			a.et = atoi(argv[i])
		case "--ports":
			i++
			for _, tok := range strings.Split(argv[i], ",") {
				if tok != "" && len(a.ports) < 8 {
					a.ports = append(a.ports, atoi(tok))
				}
			}
		}
	}
	if a.id <= 0 || a.id > len(a.ports) || a.dir == "" || a.et < 5 {
		return a, fmt.Errorf("usage: node --id I --dir DIR --ports P1,P2,P3 [--sync 0|1] [--hb MS] [--et MS]")
	}
	return a, nil
}

// version is what `peer-hashicorp-raft version` prints, for the header of bench-cluster's table:
// the module versions this binary was built with.
func version() string {
	raft, bolt := "unknown", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, m := range info.Deps {
			switch m.Path {
			case "github.com/hashicorp/raft":
				raft = m.Version
			case "github.com/hashicorp/raft-boltdb/v2":
				bolt = m.Version
			}
		}
	}
	return fmt.Sprintf("hashicorp/raft %s, raft-boltdb/v2 %s, %s", raft, bolt, runtime.Version())
}

func main() {
	if len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println(version())
		return
	}
	a, err := parseArgs(os.Args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, err := startNode(a)
	if err != nil {
		fmt.Fprintf(os.Stderr, "hashicorp-raft node %d: %v\n", a.id, err)
		os.Exit(1)
	}
	d := newDriver(n)
	d.reply("ready 127.0.0.1:%d", a.ports[a.id-1])
	d.serve(os.Stdin)
	os.Exit(0) // EOF: the driver went away
}
