package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/stanza"
)

// goroutineResult is how many goroutines a session costs while its tunnels
// have data IQs in flight: issue 15 asks that it not grow with them.
type goroutineResult struct {
	perSession float64 // goroutines added per Handler (both ends ÷ 2), median of runs
	inflight   float64 // data IQs alice had in flight when they were counted, median
}

func (r *goroutineResult) rows() []row {
	return []row{
		{label: fmt.Sprintf("goroutines per session (Δ per Handler), the IQs below in flight on %d tunnels", goroutineTunnels), unit: "goroutines", v: r.perSession},
		{label: fmt.Sprintf("data IQs (%d bytes each) in flight alice → bob when counted (aim: %d)", goroutineChunk, goroutineInflight), unit: "IQs", v: r.inflight},
	}
}

const (
	goroutineTunnels  = 10
	goroutineInflight = 256
	// goroutineChunk is the payload per data IQ: small, so that 256 of
	// them fit the session's first in-flight bound (64 KiB in today's
	// transport); with the Handler's chunk on loopback, today's transport
	// keeps only ~66 in flight.
	goroutineChunk = 256
)

// measureGoroutines counts the goroutines of two sessions while alice's 10
// tunnels have data IQs in flight to bob, -runs times.
func measureGoroutines(e *env) (*goroutineResult, error) {
	var per, inflight []float64
	for range e.o.runs {
		g, n, err := goroutinesInFlight(e)
		if err != nil {
			return nil, err
		}
		e.logf("  goroutines: %.1f per session with %d data IQs in flight", g, n)
		per, inflight = append(per, g), append(inflight, float64(n))
	}
	return &goroutineResult{perSession: median(per), inflight: median(inflight)}, nil
}

// goroutinesInFlight logs alice and bob in afresh, with 256-byte chunks,
// and opens 10 tunnels alice → bob with a reader at bob's end. Then alice
// sends bob a hold IQ whose handler stops bob's Serve loop, and a writer
// that never stops starts on each tunnel: no data IQ of alice's is answered
// any more, and every one she sends stays in flight. Once 256 are (or, if
// her bounds stop her earlier, once no more leave for half a second), it
// counts the goroutines of the process against the count before the
// tunnels opened, less the bench's own (writers, readers, the hold IQ), and
// shares them between the two Handlers.
func goroutinesInFlight(e *env) (perSession float64, inflight int64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := login(ctx, e.srv, "alice", tuning{chunk: goroutineChunk})
	if err != nil {
		return 0, 0, err
	}
	defer a.abort()
	b, err := login(ctx, e.srv, "bob", tuning{chunk: goroutineChunk})
	if err != nil {
		return 0, 0, err
	}
	defer b.abort()
	before := settledGoroutines()

	// The tunnels end with the sessions (the deferred aborts): a graceful
	// Close would wait for bob, held.
	var ends []net.Conn
	defer func() {
		for _, c := range ends {
			c.SetWriteDeadline(time.Unix(1, 0)) // stops its writer
		}
	}()
	var writers []net.Conn
	for range goroutineTunnels {
		c1, c2, err := pipe(a, b)
		if err != nil {
			return 0, 0, err
		}
		ends = append(ends, c1)
		writers = append(writers, c1)
		go io.Copy(io.Discard, c2)
	}
	const own = 2*goroutineTunnels + 1 // writers, readers, the hold IQ below

	go func() {
		iq := stanza.IQ{To: b.addr, Type: stanza.SetIQ}
		resp, err := a.s.SendIQ(ctx, iq.Wrap(xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: benchNS, Local: "hold"}})))
		if err == nil {
			resp.Close()
		}
	}()
	select {
	case <-b.held:
	case <-time.After(30 * time.Second):
		return 0, 0, errors.New("the hold IQ did not reach bob")
	}
	sent0 := a.h.TransportStats().DataSent
	for _, c := range writers {
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
	}
	// Sample until 256 are in flight or no more leave for half a second.
	var most int
	grew := time.Now()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		n := a.h.TransportStats().DataSent - sent0
		g := runtime.NumGoroutine()
		if n > inflight {
			inflight, grew = n, time.Now()
		}
		most = max(most, g)
		if inflight >= goroutineInflight || time.Since(grew) > 500*time.Millisecond {
			break
		}
	}
	return float64(most-before-own) / 2, inflight, nil
}

// settledGoroutines returns the number of goroutines once it has stayed the
// same for 50 ms (at most a second): sessions start a few as they settle.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			break
		}
		n = m
	}
	return n
}
