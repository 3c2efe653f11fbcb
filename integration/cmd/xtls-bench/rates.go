package main

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"time"

	"mellium.im/xmpp/ibb"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// ratesResult is what a user could otherwise use, beside xtls both ways at
// once, each the median of the runs.
type ratesResult struct {
	xtlsBoth float64 // payload MB/s, one tunnel, both ways at once (sum)
	ibb      float64 // mellium's ibb, one way
	tlsTCP   float64 // crypto/tls over TCP loopback
	// xtls one way and the ceiling against ibb (from throughputResult).
	xtlsOverIBB, ceilingOverIBB float64
}

func (r *ratesResult) rows() []row {
	return []row{
		{label: "xtls, one tunnel, both ways at once (sum)", unit: "MB/s", v: r.xtlsBoth},
		{label: "mellium ibb (XEP-0047), one way", unit: "MB/s", v: r.ibb},
		{label: "crypto/tls 1.3 over TCP loopback", unit: "MB/s", v: r.tlsTCP},
		{label: "xtls / ibb", unit: "×", v: r.xtlsOverIBB},
		{label: "raw ceiling / ibb: the most any tunnel here gains on ibb", unit: "×", v: r.ceilingOverIBB},
	}
}

// measureRates measures xtls both ways, ibb and TLS over TCP; tp gives the
// one-way xtls and ceiling rates to compare ibb with.
func measureRates(e *env, tp *throughputResult) (*ratesResult, error) {
	var r ratesResult
	for _, m := range []struct {
		key string
		v   *float64
		f   func() (float64, error)
	}{
		{"xtls2", &r.xtlsBoth, func() (float64, error) { return xtlsRate(e.a, e.b, e.o.size, true) }},
		{"ibb", &r.ibb, func() (float64, error) { return ibbRate(e.a, e.b, e.o.ibbSize) }},
		{"tcp", &r.tlsTCP, func() (float64, error) { return tlsTCPRate(e.o.size) }},
	} {
		v, vs, err := repeat(e.o.runs, m.f)
		if err != nil {
			return nil, err
		}
		*m.v = v
		e.logf("  %-8s %v → %.2f", m.key, round(vs), v)
	}
	r.xtlsOverIBB, r.ceilingOverIBB = tp.xtls/r.ibb, tp.ceiling/r.ibb
	return &r, nil
}

func ibbRate(a, b *party, n int64) (float64, error) {
	ln := b.ibb.Listen(b.s)
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(acc)
			return
		}
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1, err := a.ibb.Open(ctx, a.s, b.addr)
	if err != nil {
		return 0, err
	}
	c2, ok := <-acc
	if !ok {
		return 0, errors.New("ibb accept failed")
	}
	defer c2.Close()
	// ibb has no half-close: the reader counts bytes; Flush pushes the
	// last block. Its Conn writes through a base64.Encoder that keeps a
	// trailing partial group of 1-2 bytes until Close, so move a multiple
	// of 768 bytes (ibb's 1024 Base64 characters per IQ).
	n -= n % 768
	w := flushOnEnd{c1}
	rate, err := transfer(w, c2, n, false)
	c1.Close()
	return rate, err
}

// flushOnEnd gives an ibb.Conn the CloseWrite that transfer calls: a
// flush of the last partial block.
type flushOnEnd struct{ *ibb.Conn }

func (f flushOnEnd) CloseWrite() error { return f.Flush() }

// tlsTCPRate is crypto/tls 1.3 over TCP loopback: the physical reference.
func tlsTCPRate(n int64) (float64, error) {
	cert, err := xtls.GenerateCertificate(jid.MustParse("bench.localhost"))
	if err != nil {
		return 0, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(acc)
			return
		}
		sc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := sc.Handshake(); err != nil {
			c.Close()
			close(acc)
			return
		}
		acc <- sc
	}()
	c1, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return 0, err
	}
	defer c1.Close()
	c2, ok := <-acc
	if !ok {
		return 0, errors.New("accept failed")
	}
	defer c2.Close()
	return transfer(c1, c2, n, false)
}
