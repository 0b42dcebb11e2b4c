package main

// The node side of bench-cluster's driver protocol, in Go. It is the protocol of
// bench/peers/proto.h (read that header: it is the reference); this file follows it step by step
// so that the driver treats this peer exactly as it treats the craft node and the canonical/raft
// peer. Commands arrive one per line on stdin, every reply is one line on stdout:
//
//	status                      -> "status role=L|F|C|U term=T leader=ID applied=N last=N"
//	load W WARM_MS MEAS_MS SIZE -> W proposals outstanding, each resubmitted when it completes;
//	                               completions in [WARM_MS, WARM_MS+MEAS_MS) are counted and timed
//	                               (submit to completion); "load ok=N err=E secs=S p50=NS ...
//	                               fsyncs=-1 entries=-1" or "load error WHY"
//	probe                       -> a proposal every 2 ms (at most 32 in flight, 1 s timeout each)
//	                               while this node leads; "probe ok=T_NS" (CLOCK_MONOTONIC of the
//	                               first success) or "probe none" after 10 s
//	quit                        -> exits at once
//
// EOF on stdin (the driver died) exits too. Where proto.h keeps a window of W callbacks on one
// loop, this keeps W goroutines, each with one Apply future outstanding: the same closed loop,
// written the way a Go user of hashicorp/raft writes it.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The limits of proto.h: BN_MAXW, BN_PROBES, BN_MAXSIZE.
const (
	maxWindow  = 4096
	maxProbes  = 32
	maxCmdSize = 1 << 20
)

// library is what the protocol needs from the Raft node (proto.h's impl_* functions).
type library interface {
	// propose submits cmd and waits until it is applied (nil) or has failed; timeout 0: none.
	propose(cmd []byte, timeout time.Duration) error
	status() string
	isLeader() bool
	canProbe() bool
	counters() (fsyncs, entries int64)
}

type driver struct {
	lib   library
	outMu sync.Mutex
	seq   atomic.Uint64

	mu sync.Mutex
	// load
	loading bool
	running int // slot goroutines still alive, whether loading or not (proto.h: outstanding)
	// probe
	probing  bool
	probeT0  time.Time
	probeOut int
	probeGen uint64
}

// loadRun is one "load" command.
type loadRun struct {
	size        int
	tMeas, tEnd time.Time
	guard       *time.Timer
	stopped     atomic.Bool // the guard gave up: no more proposals
	// The library's counters at the first completion at or after tMeas and tEnd (proto.h).
	snapStart, snapEnd atomic.Bool
	fs0, en0, fs1, en1 int64
	// Guarded by driver.mu.
	replied bool
	lat     []int64
	errs    uint64
}

func newDriver(lib library) *driver {
	return &driver{lib: lib}
}

func (d *driver) reply(format string, args ...interface{}) {
	line := fmt.Sprintf(format, args...) + "\n"
	d.outMu.Lock()
	defer d.outMu.Unlock()
	os.Stdout.WriteString(line)
}

// makeCmd is bn_make_cmd: a counter increment by 1, padded to size with the padding varied so
// that nothing can be deduplicated. A fresh slice every time: the log stores keep the slice.
func (d *driver) makeCmd(size int) []byte {
	cmd := make([]byte, size)
	cmd[0] = 'i'
	cmd[1] = 1
	seq := d.seq.Add(1)
	if size >= 17 {
		binary.LittleEndian.PutUint64(cmd[9:17], seq)
	}
	return cmd
}

// monotonicNS is bn_now(): CLOCK_MONOTONIC, the clock the driver compares probe answers with.
func monotonicNS() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*1000000000 + uint64(ts.Nsec)
}

// serve reads commands until EOF.
func (d *driver) serve(in io.Reader) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 4096), 1<<16)
	for sc.Scan() {
		d.command(sc.Text())
	}
}

func (d *driver) command(line string) {
	switch {
	case line == "status":
		d.reply("status %s", d.lib.status())
	case len(line) > 5 && line[:5] == "load ":
		var w, warm, meas, size int
		if n, _ := fmt.Sscanf(line[5:], "%d %d %d %d", &w, &warm, &meas, &size); n != 4 ||
			w <= 0 || w > maxWindow || warm < 0 || meas < 0 || size < 9 || size > maxCmdSize {
			d.reply("load error bad arguments")
			return
		}
		d.load(w, warm, meas, size)
	case line == "probe":
		d.probe()
	case line == "quit":
		os.Exit(0)
	default:
		d.reply("error unknown command")
	}
}

// ---- load ----------------------------------------------------------------------------------

func (d *driver) load(w, warmMS, measMS, size int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loading || d.running > 0 {
		d.reply("load error busy")
		return
	}
	if !d.lib.isLeader() {
		d.reply("load error notleader")
		return
	}
	t0 := time.Now()
	run := &loadRun{size: size, fs0: -1, en0: -1, fs1: -1, en1: -1}
	run.tMeas = t0.Add(time.Duration(warmMS) * time.Millisecond)
	run.tEnd = run.tMeas.Add(time.Duration(measMS) * time.Millisecond)
	d.loading = true
	d.running = w
	run.guard = time.AfterFunc(time.Duration(warmMS+measMS+20000)*time.Millisecond, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if !run.replied {
			run.replied = true
			run.stopped.Store(true)
			d.loading = false
			d.reply("load error timeout: the cluster stopped answering")
		}
	})
	for s := 0; s < w; s++ {
		go d.slot(run)
	}
}

// slot keeps one proposal outstanding until the end of the measured interval.
func (d *driver) slot(run *loadRun) {
	var lat []int64
	var errs uint64
	for !run.stopped.Load() && time.Now().Before(run.tEnd) {
		cmd := d.makeCmd(run.size)
		t0 := time.Now()
		err := d.lib.propose(cmd, 0)
		t := time.Now()
		if !t.Before(run.tMeas) && run.snapStart.CompareAndSwap(false, true) {
			run.fs0, run.en0 = d.lib.counters()
		}
		if !t.Before(run.tEnd) && run.snapEnd.CompareAndSwap(false, true) {
			run.fs1, run.en1 = d.lib.counters()
		}
		if err != nil {
			// proto.h retries a failed slot after 1 ms, not at once.
			errs++
			time.Sleep(time.Millisecond)
			continue
		}
		if !t.Before(run.tMeas) && t.Before(run.tEnd) {
			lat = append(lat, t.Sub(t0).Nanoseconds())
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	run.lat = append(run.lat, lat...)
	run.errs += errs
	d.running--
	if d.running == 0 && !run.replied {
		run.replied = true
		d.loading = false
		run.guard.Stop()
		d.finishLoad(run)
	}
}

// finishLoad replies as bn_load_finish does; called with d.mu held, after every slot ended.
func (d *driver) finishLoad(run *loadRun) {
	fs1, en1 := run.fs1, run.en1
	if !run.snapEnd.Load() {
		fs1, en1 = d.lib.counters()
	}
	var p50, p90, p99, p999, max int64
	n := len(run.lat)
	if n > 0 {
		sort.Slice(run.lat, func(i, j int) bool { return run.lat[i] < run.lat[j] })
		at := func(q float64) int64 { return run.lat[int(q*float64(n-1))] }
		p50, p90, p99, p999, max = at(0.50), at(0.90), at(0.99), at(0.999), run.lat[n-1]
	}
	fs, en := int64(-1), int64(-1)
	if run.fs0 >= 0 && fs1 >= 0 {
		fs = fs1 - run.fs0
	}
	if run.en0 >= 0 && en1 >= 0 {
		en = en1 - run.en0
	}
	secs := run.tEnd.Sub(run.tMeas).Seconds()
	d.reply("load ok=%d err=%d secs=%.3f p50=%d p90=%d p99=%d p999=%d max=%d fsyncs=%d entries=%d",
		n, run.errs, secs, p50, p90, p99, p999, max, fs, en)
}

// ---- probe ---------------------------------------------------------------------------------

func (d *driver) probe() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.probing {
		d.reply("probe error busy")
		return
	}
	d.probing = true
	d.probeT0 = time.Now()
	d.probeGen++
	go d.probeLoop(d.probeGen)
}

func (d *driver) probeLoop(gen uint64) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		d.mu.Lock()
		if !d.probing || d.probeGen != gen {
			d.mu.Unlock()
			return
		}
		if time.Since(d.probeT0) > 10*time.Second {
			d.probing = false
			d.reply("probe none")
			d.mu.Unlock()
			return
		}
		if d.probeOut >= maxProbes || !d.lib.canProbe() {
			d.mu.Unlock()
			continue
		}
		d.probeOut++
		d.mu.Unlock()
		go d.probeOne(gen, time.Now())
	}
}

func (d *driver) probeOne(gen uint64, submitted time.Time) {
	err := d.lib.propose(d.makeCmd(100), time.Second)
	tOK := monotonicNS()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.probeOut--
	if err == nil && d.probing && d.probeGen == gen && !submitted.Before(d.probeT0) {
		d.probing = false
		d.reply("probe ok=%d", tOK)
	}
}
