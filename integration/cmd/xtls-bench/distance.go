package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/xmppxtls/xtls/integration/harness"
)

// distanceResult is xtls against ibb with the two clients rtt apart.
type distanceResult struct {
	rtt       time.Duration
	xtls, ibb float64 // payload MB/s
	// firstByte is Dial → the peer reads our first byte, in IQ round
	// trips measured between the same clients.
	firstByte float64
}

func (r *distanceResult) rows() []row {
	return []row{
		{label: fmt.Sprintf("xtls one way, clients %v apart (toxiproxy)", r.rtt), unit: "MB/s", v: r.xtls},
		{label: fmt.Sprintf("ibb one way, clients %v apart (toxiproxy)", r.rtt), unit: "MB/s", v: r.ibb},
		{label: fmt.Sprintf("xtls / ibb, clients %v apart", r.rtt), unit: "×", v: r.xtls / r.ibb},
		{label: fmt.Sprintf("Dial → peer reads our first byte, clients %v apart", r.rtt), unit: "IQ RTTs", v: r.firstByte},
	}
}

// delayedPaths starts n toxiproxies on 127.0.0.1 in front of srv's client
// port, each delaying both directions by a quarter of rtt, so that an IQ
// from a client behind one to a client behind another, and its answer, take
// rtt more. It returns the addresses to connect to and a function that
// stops the proxies.
func delayedPaths(srv *harness.Server, rtt time.Duration, n int) (via []string, stop func(), err error) {
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	var proxies []*toxiproxy.Proxy
	stop = func() {
		for _, p := range proxies {
			p.Stop()
		}
	}
	for i := range n {
		p := toxiproxy.NewProxy(api, fmt.Sprintf("c2s%d", i), "127.0.0.1:0", srv.Addr())
		if err := p.Start(); err != nil {
			stop()
			return nil, nil, err
		}
		proxies = append(proxies, p)
		for _, stream := range []string{"upstream", "downstream"} {
			spec := fmt.Sprintf(`{"type":"latency","stream":%q,"attributes":{"latency":%d}}`, stream, (rtt / 4).Milliseconds())
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(spec)); err != nil {
				stop()
				return nil, nil, err
			}
		}
		via = append(via, p.Listen)
	}
	return via, stop, nil
}

// measureDistance logs two more clients in through toxiproxy, rtt apart,
// and measures xtls and ibb between them.
func measureDistance(e *env, rtt time.Duration) (*distanceResult, error) {
	via, stop, err := delayedPaths(e.srv, rtt, 2)
	if err != nil {
		return nil, err
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := loginVia(ctx, e.srv, via[0], "alice", tuning{chunk: e.o.chunk})
	if err != nil {
		return nil, err
	}
	defer a.close()
	b, err := loginVia(ctx, e.srv, via[1], "bob", tuning{chunk: e.o.chunk})
	if err != nil {
		return nil, err
	}
	defer b.close()
	measured, err := iqRTT(a, b, 20)
	if err != nil {
		return nil, err
	}
	var xs, is []float64
	for range e.o.runs {
		x, err := xtlsRate(a, b, e.o.rttSize, false)
		if err != nil {
			return nil, err
		}
		i, err := ibbRate(a, b, max(e.o.rttSize/10, 768))
		if err != nil {
			return nil, err
		}
		xs, is = append(xs, x), append(is, i)
	}
	r := &distanceResult{rtt: rtt, xtls: median(xs), ibb: median(is)}
	// Where the round trip dominates the CPU work, first-byte latency in
	// round trips is the protocol's: start + ClientHello, proceed +
	// ServerHello, Finished + data.
	peer, _, err := firstByte(a, b, e.o.dials)
	if err != nil {
		return nil, fmt.Errorf("first byte: %w", err)
	}
	r.firstByte = float64(peer) / float64(measured)
	e.logf("  at %v (IQ RTT measured %.1f ms): xtls %v, ibb %v MB/s, first byte %.1f ms", rtt, ms(measured), round(xs), round(is), ms(peer))
	return r, nil
}
