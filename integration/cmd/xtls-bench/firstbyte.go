package main

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// firstByteResult is the time from Dial to the first application byte, in
// ms and in small IQ round trips measured in the same run, with and without
// the Handler's quick ACK, beside the same over TCP.
type firstByteResult struct {
	rtt        time.Duration // median of 200 small IQ round trips
	peer, own  time.Duration // Dial → the peer reads our first byte; → we read the peer's
	noQuickAck time.Duration // peer, with Config.NoQuickAck
	tcp        time.Duration // peer, TLS 1.3 over TCP loopback with client certificates
}

func (r *firstByteResult) rows() []row {
	rtts := func(d time.Duration) float64 { return float64(d) / float64(r.rtt) }
	return []row{
		{label: "small IQ round trip (median of 200)", unit: "ms", v: ms(r.rtt)},
		{label: "Dial → peer reads our first byte", unit: "ms", v: ms(r.peer)},
		{label: "Dial → peer reads our first byte", unit: "IQ RTTs", v: rtts(r.peer)},
		{label: "Dial → we read the peer's first byte", unit: "ms", v: ms(r.own)},
		{label: "Dial → we read the peer's first byte", unit: "IQ RTTs", v: rtts(r.own)},
		{label: "Dial → peer reads our first byte, Config.NoQuickAck", unit: "ms", v: ms(r.noQuickAck)},
		{label: "Dial → peer reads our first byte, Config.NoQuickAck", unit: "IQ RTTs", v: rtts(r.noQuickAck)},
		{label: "same over TCP loopback: TLS 1.3, mutual certificates", unit: "ms", v: ms(r.tcp)},
		{label: "(xtls − TCP) / IQ RTT: round trips the XMPP path adds", unit: "IQ RTTs", v: rtts(r.peer - r.tcp)},
	}
}

func measureFirstByte(e *env) (*firstByteResult, error) {
	var r firstByteResult
	var err error
	if r.rtt, err = iqRTT(e.a, e.b, 200); err != nil {
		return nil, err
	}
	if r.peer, r.own, err = firstByte(e.a, e.b, e.o.dials); err != nil {
		return nil, err
	}
	// Two more clients whose Handlers do not flush the delayed ACK.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	aq, err := login(ctx, e.srv, "alice", tuning{chunk: e.o.chunk, noQuickAck: true})
	if err != nil {
		return nil, err
	}
	defer aq.close()
	bq, err := login(ctx, e.srv, "bob", tuning{chunk: e.o.chunk, noQuickAck: true})
	if err != nil {
		return nil, err
	}
	defer bq.close()
	if r.noQuickAck, _, err = firstByte(aq, bq, e.o.dials); err != nil {
		return nil, err
	}
	if r.tcp, err = tlsTCPFirstByte(e.o.dials); err != nil {
		return nil, err
	}
	e.logf("  rtt %.2f ms, first byte %.2f / %.2f ms, over TCP %.2f ms", ms(r.rtt), ms(r.peer), ms(r.own), ms(r.tcp))
	return &r, nil
}

// iqRTT is the median of n small IQ round trips from a to b.
func iqRTT(a, b *party, n int) (time.Duration, error) {
	ds := make([]float64, 0, n)
	for range n {
		iq := stanza.IQ{To: b.addr, Type: stanza.GetIQ}
		start := time.Now()
		resp, err := a.s.SendIQ(context.Background(), iq.Wrap(xmlstream.Wrap(nil, xml.StartElement{Name: xml.Name{Space: benchNS, Local: "ping"}})))
		if err != nil {
			return 0, err
		}
		resp.Close()
		ds = append(ds, float64(time.Since(start)))
	}
	return time.Duration(median(ds)), nil
}

// firstByte dials n tunnels one after the other and returns the medians of
// the time from Dial to the peer reading our first byte, and to us reading
// the peer's first byte (the peer writes as soon as it accepts).
func firstByte(a, b *party, n int) (peer, own time.Duration, err error) {
	type mark struct {
		at  time.Time
		err error
	}
	got := make(chan mark, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	serve := func(c net.Conn) {
		defer wg.Done()
		defer c.Close()
		c.Write([]byte{'b'})
		var one [1]byte
		_, err := io.ReadFull(c, one[:])
		got <- mark{time.Now(), err}
		io.Copy(io.Discard, c)
	}
	go func() {
		for range n {
			c, ok := <-b.acc
			if !ok {
				got <- mark{err: errors.New("accept failed")}
				return
			}
			wg.Add(1)
			go serve(c)
		}
	}()
	var ps, os []float64
	for range n {
		start := time.Now()
		c, err := a.h.Dial(context.Background(), b.addr)
		if err != nil {
			return 0, 0, err
		}
		if _, err := c.Write([]byte{'a'}); err != nil {
			return 0, 0, err
		}
		var one [1]byte
		if _, err := io.ReadFull(c, one[:]); err != nil {
			return 0, 0, err
		}
		ownAt := time.Now()
		m := <-got
		if m.err != nil {
			return 0, 0, m.err
		}
		c.Close()
		ps = append(ps, float64(m.at.Sub(start)))
		os = append(os, float64(ownAt.Sub(start)))
	}
	return time.Duration(median(ps)), time.Duration(median(os)), nil
}

// tlsTCPFirstByte is firstByte's floor: the time from Dial to the server
// reading the client's first byte over TCP loopback with TLS 1.3 and a
// client certificate, as xtls does it, so what remains of xtls's figure is
// the XMPP path's. The median of n dials.
func tlsTCPFirstByte(n int) (time.Duration, error) {
	scert, err := xtls.GenerateCertificate(jid.MustParse("bench.localhost"))
	if err != nil {
		return 0, err
	}
	ccert, err := xtls.GenerateCertificate(jid.MustParse("client.localhost"))
	if err != nil {
		return 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	got := make(chan time.Time, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			sc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{scert}, ClientAuth: tls.RequireAnyClientCert})
			var one [1]byte
			io.ReadFull(sc, one[:])
			got <- time.Now()
			sc.Close()
		}
	}()
	var ds []float64
	for range n {
		start := time.Now()
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{ccert}})
		if err != nil {
			return 0, err
		}
		if _, err := c.Write([]byte{'a'}); err != nil {
			return 0, err
		}
		ds = append(ds, float64((<-got).Sub(start)))
		c.Close()
	}
	return time.Duration(median(ds)), nil
}
