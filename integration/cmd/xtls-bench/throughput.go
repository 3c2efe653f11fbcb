package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/stanza"
)

// throughputResult is xtls one way against the raw ceiling of the stack,
// run in alternation, with the CPU both took (-quick measures only this).
type throughputResult struct {
	xtls, ceiling float64 // payload MB/s, medians
	ratio         float64 // median of the ratios of neighbouring runs
	chunk         int     // payload per data IQ, the Handler's choice
	// Server CPU (100 = one core) and CPU per MB of the server and of
	// the clients, during xtls and during the ceiling; NaN where the
	// platform does not tell.
	busyX, busyC       float64
	serverMsX, serverC float64
	clientMsX, clientC float64
}

func (r *throughputResult) rows() []row {
	return []row{
		{label: "xtls, one tunnel, one way", unit: "MB/s", v: r.xtls},
		{label: "raw ceiling: pipelined IQ-sets, no TLS", unit: "MB/s", v: r.ceiling},
		{label: "xtls / raw ceiling", unit: "×", v: r.ratio},
		{label: "payload per data IQ (the Handler's choice), both", unit: "bytes", v: float64(r.chunk)},
		{label: "server CPU during xtls one way (100 = one core)", unit: "%", v: r.busyX},
		{label: "server CPU during the raw ceiling (100 = one core)", unit: "%", v: r.busyC},
		{label: "server CPU per MB, xtls one way", unit: "ms", v: r.serverMsX},
		{label: "server CPU per MB, raw ceiling", unit: "ms", v: r.serverC},
		{label: "client CPU per MB (both ends), xtls one way", unit: "ms", v: r.clientMsX},
		{label: "client CPU per MB (both ends), raw ceiling", unit: "ms", v: r.clientC},
	}
}

// measureThroughput alternates xtls and the ceiling run by run; their ratio
// is the median of neighbours' ratios: the machine drifts between runs more
// than within one pair. On Linux the same runs report how busy the server's
// CPU was: a server that is not busy waits for something, which is where a
// tunnel loses against the ceiling.
func measureThroughput(e *env) (*throughputResult, error) {
	var xs, cs, rs []float64
	var xcpu, ccpu cpuUse
	for range e.o.runs {
		u := startCPU(e.srv.PID())
		x, err := xtlsRate(e.a, e.b, e.o.size, false)
		if err != nil {
			return nil, fmt.Errorf("xtls one way: %w", err)
		}
		xcpu.add(u.stop())
		u = startCPU(e.srv.PID())
		// The tunnel's Dial settled the chunk size for this server.
		c, err := ceiling(e.a, e.b, e.o.size, e.a.h.ChunkSize(), e.o.inflight)
		if err != nil {
			return nil, fmt.Errorf("ceiling: %w", err)
		}
		ccpu.add(u.stop())
		xs, cs, rs = append(xs, x), append(cs, c), append(rs, x/c)
	}
	if e.b.h.ChunkSize() != e.a.h.ChunkSize() {
		return nil, fmt.Errorf("chunk sizes differ: alice %d, bob %d", e.a.h.ChunkSize(), e.b.h.ChunkSize())
	}
	r := &throughputResult{xtls: median(xs), ceiling: median(cs), ratio: median(rs), chunk: e.a.h.ChunkSize()}
	e.logf("  xtls1    %v\n  ceil     %v\n  r_ceil   %v → %.2f", round(xs), round(cs), round(rs), r.ratio)
	mb := float64(e.o.runs) * float64(e.o.size) / 1e6
	e.logf("  CPU ms per MB (clients / server / wall): xtls %s, ceiling %s", xcpu.per(mb), ccpu.per(mb))
	r.busyX, r.busyC, r.serverMsX, r.serverC, r.clientMsX, r.clientC = math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
	if xcpu.server > 0 && ccpu.server > 0 {
		r.busyX, r.busyC = 100*xcpu.server.Seconds()/xcpu.wall.Seconds(), 100*ccpu.server.Seconds()/ccpu.wall.Seconds()
		r.serverMsX, r.serverC = ms(xcpu.server)/mb, ms(ccpu.server)/mb
	}
	if xcpu.self > 0 && ccpu.self > 0 {
		r.clientMsX, r.clientC = ms(xcpu.self)/mb, ms(ccpu.self)/mb
	}
	return r, nil
}

// ceiling sends n bytes as Base64 chunks in IQ-sets, inflight outstanding,
// which the peer answers at once: the most any tunnel on this stack can do.
func ceiling(a, b *party, n int64, chunk, inflight int) (float64, error) {
	raw := make([]byte, chunk)
	rand.Read(raw)
	b64 := base64.StdEncoding.EncodeToString(raw)
	count := int((n + int64(chunk) - 1) / int64(chunk))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	start := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				iq := stanza.IQ{To: b.addr, Type: stanza.SetIQ}
				payload := xmlstream.Wrap(xmlstream.Token(xml.CharData(b64)), xml.StartElement{Name: xml.Name{Space: benchNS, Local: "data"}})
				resp, err := a.s.SendIQ(context.Background(), iq.Wrap(payload))
				if err != nil {
					errs <- err
					return
				}
				resp.Close()
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(int64(count)*int64(chunk)) / d.Seconds() / 1e6, nil
}
