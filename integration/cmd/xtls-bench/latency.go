package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xmppxtls/xtls/integration/harness"
)

// Latency under load: does a chat message still get through while a file
// moves? Each run logs alice and bob in afresh, opens two tunnels alice →
// bob (a bulk one and an echo one) and sends probes, each from its own
// goroutine at a fixed schedule, timed from the send to the answer: an
// XEP-0199 ping alice → bob on the same sessions, and a 100-byte echo over
// the second tunnel. First idle, then while the bulk tunnel moves data
// alice → bob as fast as it can. The target (issue 15) is loaded p99 <=
// 3 × idle p50 + 10 ms.

// latencySetup is where the rows are measured.
type latencySetup struct {
	rtt   time.Duration // the clients this far apart through toxiproxy; 0: direct
	stock bool          // a server with the stock client limits (harness.StockLimits)
}

func (s latencySetup) String() string {
	switch {
	case s.stock:
		return "stock limits"
	case s.rtt > 0:
		return fmt.Sprintf("%v apart", s.rtt)
	}
	return "direct"
}

// parseLatencySetups reads -latency: "direct", "stock" or a round trip.
func parseLatencySetups(list string) ([]latencySetup, error) {
	var setups []latencySetup
	for _, s := range strings.Split(list, ",") {
		switch s {
		case "":
		case "direct":
			setups = append(setups, latencySetup{})
		case "stock":
			setups = append(setups, latencySetup{stock: true})
		default:
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("bad -latency setup %q: direct, stock or a round trip such as 50ms", s)
			}
			setups = append(setups, latencySetup{rtt: d})
		}
	}
	return setups, nil
}

// probePlan is the schedule of a run's probes: idle, then loaded.
type probePlan struct {
	idle, loaded schedule
	timeout      time.Duration // a probe unanswered by then counts as lost, and as the timeout
	warmup       time.Duration // bulk transfer before the first loaded probe
}

// schedule is how many probes of each kind a phase sends, and how often.
type schedule struct {
	pings, echoes        int
	pingEvery, echoEvery time.Duration
}

// planFor returns the probes of a setup. Without limits: -pings pings and
// echoes per phase, one of each every 10 ms (2 s for 200). With the stock
// limits the probes must stay a small share of what the server reads from
// alice (3000 B/s on ejabberd: a ping costs alice ~150 bytes, an echo
// ~450), so they are fewer and slower: idle 40 pings and 10 echoes in 4 s,
// loaded 60 pings (4/s) and 15 echoes (1/s) over 15 s, ~25 % of ejabberd's
// rate and ~8 % of Prosody's.
func planFor(s latencySetup, o options) probePlan {
	if s.stock {
		return probePlan{
			idle:    schedule{pings: 40, pingEvery: 100 * time.Millisecond, echoes: 10, echoEvery: 400 * time.Millisecond},
			loaded:  schedule{pings: 60, pingEvery: 250 * time.Millisecond, echoes: 15, echoEvery: time.Second},
			timeout: 15 * time.Second, warmup: 3 * time.Second,
		}
	}
	every := schedule{pings: o.pings, pingEvery: 10 * time.Millisecond, echoes: o.pings, echoEvery: 10 * time.Millisecond}
	return probePlan{idle: every, loaded: every, timeout: 10 * time.Second, warmup: time.Second}
}

// latencyResult is one setup's rows: the medians over the runs of each
// run's figures.
type latencyResult struct {
	setup  latencySetup
	plan   probePlan
	ping   phaseLatency
	echo   phaseLatency
	bulk   float64 // payload bytes/s through the bulk tunnel while the probes were sent
	c2s    float64 // bytes/s alice's session wrote to its socket meanwhile (TLS records); NaN if unknown
	limit  int     // the server's c2s rate limit, bytes/s; 0 if none
	resent float64 // data IQs sent again during the loaded phase, both ends
	lost   int     // probes unanswered within the timeout, all runs
}

// phaseLatency is one probe's round trips idle and loaded.
type phaseLatency struct {
	idle50, idle99, load50, load99 time.Duration
}

func (r *latencyResult) rows() []row {
	s := r.setup.String()
	bulkUnit, bulkScale := "MB/s", 1e6
	if r.setup.stock {
		bulkUnit, bulkScale = "kB/s", 1e3
	}
	t := r.plan.timeout
	lat := func(label string, d time.Duration) row {
		return row{label: s + ": " + label, unit: "ms", v: ms(d), atLeast: d >= t}
	}
	probe := func(name string, p phaseLatency, stockTarget time.Duration) []row {
		target := lat(name+", target: 3 × idle p50 + 10 ms", 3*p.idle50+10*time.Millisecond)
		if r.setup.stock {
			// Behind a shaper of a few KB/s one data stanza alone takes
			// hundreds of milliseconds: the targets are absolute.
			target = lat(name+", target: during bulk p99 <=", stockTarget)
		}
		return []row{
			lat(name+", idle, p50", p.idle50),
			lat(name+", idle, p99", p.idle99),
			lat(name+", during bulk, p50", p.load50),
			lat(name+", during bulk, p99", p.load99),
			{label: s + ": " + name + ", during bulk p99 / idle p50", unit: "×", v: float64(p.load99) / float64(p.idle50), atLeast: p.load99 >= t},
			target,
		}
	}
	rows := probe("ping", r.ping, time.Second)
	rows = append(rows, probe("echo", r.echo, 1500*time.Millisecond)...)
	rows = append(rows,
		row{label: s + ": bulk tunnel's payload during the probes", unit: bulkUnit, v: r.bulk / bulkScale},
		row{label: s + ": alice's c2s socket writes during the probes", unit: "kB/s", v: r.c2s / 1e3},
	)
	if r.limit > 0 {
		rows = append(rows, row{label: s + ": the server's c2s rate limit", unit: "kB/s", v: float64(r.limit) / 1e3})
	}
	return append(rows,
		row{label: s + ": data IQs sent again during bulk (both ends)", unit: "IQs", v: r.resent},
		row{label: fmt.Sprintf("%s: probes unanswered within %v (all runs)", s, t), unit: "probes", v: float64(r.lost)},
	)
}

// latencyLegend explains the latency rows under the table's header.
const latencyLegend = `latency rows: "ping" is an XEP-0199 ping alice → bob on the same sessions, "echo" 100 bytes bob echoes over a second
tunnel; each probe leaves on its own goroutine on a schedule and is timed to its answer, idle and "during bulk", while a
first tunnel moves data alice → bob as fast as it can. "50ms apart": the clients behind toxiproxy; "stock limits": the server
with the client limits Debian ships (harness.StockLimits). Targets (issue 15): during-bulk p99 <= 3 × idle p50 + 10 ms;
with the stock limits ping p99 <= 1 s, echo p99 <= 1.5 s, alice's c2s writes >= 0.8 × the limit, no data IQ sent again.`

// measureLatency runs -runs latency runs for one setup.
func measureLatency(e *env, s latencySetup) (*latencyResult, error) {
	plan := planFor(s, e.o)
	srv := e.srv
	via := []string{srv.Addr(), srv.Addr()}
	switch {
	case s.stock:
		stock, err := e.stockServer()
		if err != nil {
			return nil, err
		}
		srv, via = stock, []string{stock.Addr(), stock.Addr()}
	case s.rtt > 0:
		v, stop, err := delayedPaths(srv, s.rtt, 2)
		if err != nil {
			return nil, err
		}
		defer stop()
		via = v
	}
	r := &latencyResult{setup: s, plan: plan, limit: srv.C2SRate()}
	var runs []latencyRun
	for range e.o.runs {
		run, err := runLatency(e, srv, via, plan)
		if err != nil {
			return nil, err
		}
		e.logf("  latency, %s: ping %.1f / %.1f, echo %.1f / %.1f ms (idle p50 / loaded p99), bulk %.0f B/s, c2s writes %.0f B/s, %d sent again, %d lost",
			s, ms(run.ping.idle50), ms(run.ping.load99), ms(run.echo.idle50), ms(run.echo.load99), run.bulk, run.c2s, run.resent, run.lost)
		runs = append(runs, run)
		r.lost += run.lost
	}
	med := func(f func(latencyRun) float64) float64 {
		vs := make([]float64, len(runs))
		for i, run := range runs {
			vs[i] = f(run)
		}
		return median(vs)
	}
	medD := func(f func(latencyRun) time.Duration) time.Duration {
		return time.Duration(med(func(run latencyRun) float64 { return float64(f(run)) }))
	}
	phase := func(p func(latencyRun) phaseLatency) phaseLatency {
		return phaseLatency{
			idle50: medD(func(run latencyRun) time.Duration { return p(run).idle50 }),
			idle99: medD(func(run latencyRun) time.Duration { return p(run).idle99 }),
			load50: medD(func(run latencyRun) time.Duration { return p(run).load50 }),
			load99: medD(func(run latencyRun) time.Duration { return p(run).load99 }),
		}
	}
	r.ping = phase(func(run latencyRun) phaseLatency { return run.ping })
	r.echo = phase(func(run latencyRun) phaseLatency { return run.echo })
	r.bulk = med(func(run latencyRun) float64 { return run.bulk })
	r.c2s = med(func(run latencyRun) float64 { return run.c2s })
	r.resent = med(func(run latencyRun) float64 { return float64(run.resent) })
	return r, nil
}

// latencyRun is what one run measured.
type latencyRun struct {
	ping, echo phaseLatency
	bulk, c2s  float64 // bytes/s
	resent     int64
	lost       int
}

// runLatency logs alice and bob in through via, and measures one run.
func runLatency(e *env, srv *harness.Server, via []string, plan probePlan) (latencyRun, error) {
	var run latencyRun
	// Probes still waiting when the run ends stop once the sessions are
	// closed: this cancel is deferred first, so it runs after the aborts.
	probeCtx, stopProbes := context.WithCancel(context.Background())
	defer stopProbes()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := loginVia(ctx, srv, via[0], "alice", tuning{chunk: e.o.chunk})
	if err != nil {
		return run, err
	}
	defer a.abort()
	b, err := loginVia(ctx, srv, via[1], "bob", tuning{chunk: e.o.chunk})
	if err != nil {
		return run, err
	}
	defer b.abort()
	bulk1, bulk2, err := pipe(a, b)
	if err != nil {
		return run, err
	}
	echo1, echo2, err := pipe(a, b)
	if err != nil {
		return run, err
	}
	go io.Copy(echo2, echo2) // bob echoes; ends when the tunnel does
	p := &prober{ctx: probeCtx, a: a, b: b, echo: newEchoer(echo1), timeout: plan.timeout}

	idle := p.run(plan.idle, nil)

	// Bulk alice → bob until the run ends; bob counts what he reads.
	var got atomic.Int64
	go io.Copy(countWriter{&got}, bulk2)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := bulk1.Write(buf); err != nil {
				return
			}
		}
	}()
	defer bulk1.SetWriteDeadline(time.Unix(1, 0)) // stops the writer
	time.Sleep(plan.warmup)                       // let the transfer settle
	type mark struct {
		at               time.Time
		got, wrote       int64
		resentA, resentB int64
	}
	now := func() mark {
		return mark{time.Now(), got.Load(), bytesWritten(a.tcp), a.h.TransportStats().Retransmits, b.h.TransportStats().Retransmits}
	}
	m0 := now()
	var m1 mark
	loaded := p.run(plan.loaded, func() { m1 = now() })
	m2 := now()

	secs := m1.at.Sub(m0.at).Seconds()
	run.bulk = float64(m1.got-m0.got) / secs
	run.c2s = nan()
	if m0.wrote >= 0 && m1.wrote >= 0 {
		run.c2s = float64(m1.wrote-m0.wrote) / secs
	}
	run.resent = m2.resentA - m0.resentA + m2.resentB - m0.resentB
	run.ping = phaseLatency{percentile(idle.ping, 50), percentile(idle.ping, 99), percentile(loaded.ping, 50), percentile(loaded.ping, 99)}
	run.echo = phaseLatency{percentile(idle.echo, 50), percentile(idle.echo, 99), percentile(loaded.echo, 50), percentile(loaded.echo, 99)}
	run.lost = idle.lost + loaded.lost
	return run, nil
}

// countWriter counts what is written to it.
type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}
