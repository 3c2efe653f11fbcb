package main

import (
	"fmt"
	"time"
)

// cpuUse is CPU time spent by this process (both clients) and by the
// server, and the wall time, over some runs.
type cpuUse struct {
	self, server, wall time.Duration
	// the server's read and write system calls and its voluntary and
	// involuntary context switches
	reads, writes, vol, invol int64
}

func (u *cpuUse) add(v cpuUse) {
	u.self += v.self
	u.server += v.server
	u.wall += v.wall
	u.reads += v.reads
	u.writes += v.writes
	u.vol += v.vol
	u.invol += v.invol
}

func (u cpuUse) per(mb float64) string {
	f := func(d time.Duration) float64 { return ms(d) / mb }
	g := func(n int64) float64 { return float64(n) / mb }
	return fmt.Sprintf("%.1f / %.1f / %.1f (server per MB: %.0f reads, %.0f writes, %.0f+%.0f switches)", f(u.self), f(u.server), f(u.wall), g(u.reads), g(u.writes), g(u.vol), g(u.invol))
}

// cpuMeter measures one run.
type cpuMeter struct {
	pid   int
	start cpuUse
	at    time.Time
}

func startCPU(pid int) cpuMeter {
	return cpuMeter{pid: pid, start: cpuNow(pid), at: time.Now()}
}

func (m cpuMeter) stop() cpuUse {
	now := cpuNow(m.pid)
	return cpuUse{self: now.self - m.start.self, server: now.server - m.start.server, wall: time.Since(m.at),
		reads: now.reads - m.start.reads, writes: now.writes - m.start.writes, vol: now.vol - m.start.vol, invol: now.invol - m.start.invol}
}
