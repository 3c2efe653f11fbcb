package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"

	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"
)

// prober sends the latency probes of one run: pings alice → bob and echoes
// over a tunnel. Nothing in it queues: each probe starts on its own
// goroutine at its time in the schedule, and is timed from its send to its
// answer.
type prober struct {
	ctx     context.Context // ends once the run's sessions are closed
	a, b    *party
	echo    *echoer
	timeout time.Duration
}

// probeSamples are the round trips of one phase. A probe unanswered within
// the timeout counts as the timeout, and as lost.
type probeSamples struct {
	ping, echo []time.Duration
	lost       int
}

// run sends the probes of sch (the first echo half an interval after the
// first ping) and waits until each has its answer or has timed out. sent,
// if not nil, is called once the last probe is on its way.
func (p *prober) run(sch schedule, sent func()) probeSamples {
	var (
		mu  sync.Mutex
		s   probeSamples
		wg  sync.WaitGroup
		all sync.WaitGroup // the schedules
	)
	record := func(list *[]time.Duration, d time.Duration, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			d = p.timeout
			s.lost++
		}
		*list = append(*list, d)
	}
	every := func(n int, interval, offset time.Duration, probe func() (time.Duration, bool), list *[]time.Duration) {
		defer all.Done()
		start := time.Now().Add(offset)
		for i := range n {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, ok := probe()
				record(list, d, ok)
			}()
		}
	}
	all.Add(2)
	go every(sch.pings, sch.pingEvery, 0, p.ping, &s.ping)
	go every(sch.echoes, sch.echoEvery, sch.echoEvery/2, p.echo.roundTrip(p.timeout), &s.echo)
	all.Wait()
	if sent != nil {
		sent()
	}
	wg.Wait()
	return s
}

// ping sends one XEP-0199 ping alice → bob. An error answer counts as lost:
// only bob's own answer counts.
func (p *prober) ping() (time.Duration, bool) {
	type answer struct {
		d   time.Duration
		err error
	}
	done := make(chan answer, 1)
	start := time.Now()
	go func() {
		// No deadline on the IQ: mellium turns a context that ends
		// while it writes into a write deadline on the session's TLS
		// connection, which would break it for good. The run's context
		// ends after the sessions are closed.
		err := p.a.s.UnmarshalIQ(p.ctx, ping.IQ{IQ: stanza.IQ{Type: stanza.GetIQ, To: p.b.addr}}.TokenReader(), nil)
		done <- answer{time.Since(start), err}
	}()
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	select {
	case a := <-done:
		return a.d, a.err == nil
	case <-timer.C:
		return p.timeout, false
	}
}

// echoSize is the size of an echo probe.
const echoSize = 100

// echoer times 100-byte records written to a tunnel whose peer writes back
// what it reads. Records carry a sequence number, so several may be in
// flight; one goroutine reads them back as they come.
type echoer struct {
	c    net.Conn
	fill []byte // the record's bytes after its sequence number

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]chan time.Time
}

func newEchoer(c net.Conn) *echoer {
	e := &echoer{c: c, fill: make([]byte, echoSize-8), waiting: map[uint64]chan time.Time{}}
	rand.Read(e.fill)
	go e.read()
	return e
}

// read delivers the arrival time of each record that comes back, until the
// tunnel ends.
func (e *echoer) read() {
	rec := make([]byte, echoSize)
	for {
		if _, err := io.ReadFull(e.c, rec); err != nil {
			return
		}
		seq := binary.BigEndian.Uint64(rec)
		e.mu.Lock()
		ch := e.waiting[seq]
		delete(e.waiting, seq)
		e.mu.Unlock()
		if ch != nil {
			ch <- time.Now()
		}
	}
}

// roundTrip returns a probe that writes one record and waits up to timeout
// for it to come back.
func (e *echoer) roundTrip(timeout time.Duration) func() (time.Duration, bool) {
	return func() (time.Duration, bool) {
		back := make(chan time.Time, 1)
		e.mu.Lock()
		seq := e.next
		e.next++
		e.waiting[seq] = back
		e.mu.Unlock()
		rec := binary.BigEndian.AppendUint64(make([]byte, 0, echoSize), seq)
		rec = append(rec, e.fill...)
		start := time.Now()
		written := make(chan error, 1)
		go func() { _, err := e.c.Write(rec); written <- err }() // a Write may wait for credit
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case at := <-back:
			return at.Sub(start), true
		case err := <-written:
			if err != nil {
				return timeout, false
			}
		case <-timer.C:
			return timeout, false
		}
		select {
		case at := <-back:
			return at.Sub(start), true
		case <-timer.C:
			return timeout, false
		}
	}
}
