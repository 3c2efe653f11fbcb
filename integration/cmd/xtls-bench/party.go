package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/ibb"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

// benchNS is the namespace of the bench's own IQs: raw data for the
// ceiling, a small ping, and a hold that stops the receiver's session.
const benchNS = "urn:xmppxtls:bench"

// party is a logged-in client serving xtls, ibb, XEP-0199 pings and the
// bench's raw IQs.
type party struct {
	s    *xmpp.Session
	h    *xtls.Handler
	ibb  *ibb.Handler
	addr jid.JID
	tcp  *net.TCPConn // the session's socket, for its counters
	done chan error
	// acc receives the tunnels peers open (one Accept loop per party).
	acc chan net.Conn
	// held is signalled when a hold IQ arrives; the session's Serve loop
	// then waits until release is closed (see goroutines.go).
	held    chan struct{}
	release chan struct{}
	relOnce sync.Once
}

// tuning is what a party's Handler is given beyond the defaults.
type tuning struct {
	chunk      int  // transport.Config.ChunkSize
	noQuickAck bool // xtls.Config.NoQuickAck
	// moves says whether the party's tunnels may move onto a SOCKS5
	// bytestream. Its zero value keeps them on IQs, which is what every
	// row measures unless it says otherwise (bytestream.go).
	moves movePolicy
}

// movePolicy is a party's xtls.Config.Bytestreams, with the bench's
// default (stay on IQs) as its zero value.
type movePolicy int

const (
	stayOnIQs     movePolicy = iota // xtls.BytestreamOff
	moveAuto                        // xtls.BytestreamAuto, the library's default
	moveOnRequest                   // xtls.BytestreamOnRequest
)

func (m movePolicy) policy() xtls.BytestreamPolicy {
	switch m {
	case moveAuto:
		return xtls.BytestreamAuto
	case moveOnRequest:
		return xtls.BytestreamOnRequest
	}
	return xtls.BytestreamOff
}

func login(ctx context.Context, srv *harness.Server, user string, t tuning) (*party, error) {
	return loginVia(ctx, srv, srv.Addr(), user, t)
}

// loginVia is login through another address that leads to the server.
func loginVia(ctx context.Context, srv *harness.Server, via, user string, t tuning) (*party, error) {
	s, err := srv.ConnectVia(ctx, via, user, user+"-secret", nil)
	if err != nil {
		return nil, err
	}
	cert, err := xtls.GenerateCertificate(s.LocalAddr())
	if err != nil {
		return nil, err
	}
	p := &party{
		s: s, addr: s.LocalAddr(), tcp: tcpOf(s.Conn()), ibb: &ibb.Handler{},
		done: make(chan error, 1), acc: make(chan net.Conn, 4096),
		held: make(chan struct{}, 1), release: make(chan struct{}),
	}
	p.h = xtls.NewHandler(s, &xtls.Config{
		Certificate: cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true,
		NoQuickAck: t.noQuickAck, Bytestreams: t.moves.policy(),
		// The memory rows open -tunnels (1000) tunnels with one peer: more
		// than a peer may hold by default (MaxTunnelsPerPeer, 256; the memory
		// budgets, 64 and 16 MiB of windows).
		Transport: &transport.Config{ChunkSize: t.chunk, MaxTunnelsPerPeer: 4096, MemoryBudget: 1 << 30, PeerMemoryBudget: 1 << 30},
	})
	answer := mux.IQHandlerFunc(func(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
		_, err := xmlstream.Copy(t, iq.Result(nil))
		return err
	})
	hold := mux.IQHandlerFunc(func(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
		p.held <- struct{}{}
		<-p.release // Serve reads nothing meanwhile
		_, err := xmlstream.Copy(t, iq.Result(nil))
		return err
	})
	m := mux.New(stanza.NSClient,
		disco.Handle(), ping.Handle(), p.h.Handle(), ibb.Handle(p.ibb),
		mux.IQ(stanza.SetIQ, xml.Name{Space: benchNS, Local: "data"}, answer),
		mux.IQ(stanza.GetIQ, xml.Name{Space: benchNS, Local: "ping"}, answer),
		mux.IQ(stanza.SetIQ, xml.Name{Space: benchNS, Local: "hold"}, hold),
	)
	go func() {
		err := s.Serve(m)
		p.h.SessionEnded(err)
		p.done <- err
	}()
	ln := p.h.Listen()
	go func() {
		defer close(p.acc)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.acc <- c
		}
	}()
	return p, nil
}

// tcpOf returns the TCP connection under c (a session's TLS connection), or
// nil.
func tcpOf(c net.Conn) *net.TCPConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*net.TCPConn)
	return tc
}

// close ends the party: it releases a held session, aborts its tunnels,
// closes the stream and then the connection.
func (p *party) close() {
	p.relOnce.Do(func() { close(p.release) })
	p.h.Close()
	p.s.Close()
	p.s.Conn().Close()
	<-p.done
}

// abort ends the party from the connection up, so that nothing waits behind
// what its stream still has queued (at a shaper, say): the connection
// first, then the Handler, whose tunnels have failed with the session.
func (p *party) abort() {
	p.relOnce.Do(func() { close(p.release) })
	p.s.Conn().Close()
	<-p.done
	p.h.Close()
}

// pipe dials a tunnel from a to b.
func pipe(a, b *party) (c1, c2 net.Conn, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c1, err = a.h.Dial(ctx, b.addr)
	if err != nil {
		return nil, nil, err
	}
	c2, ok := <-b.acc
	if !ok {
		c1.Close()
		return nil, nil, errors.New("accept failed")
	}
	return c1, c2, nil
}

// transfer copies n bytes from c1 to c2 (and, if both, from c2 to c1 at the
// same time) and returns payload MB/s.
func transfer(c1, c2 net.Conn, n int64, both bool) (float64, error) {
	src := make([]byte, 64<<10)
	rand.Read(src)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	oneWay := func(from, to net.Conn) {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for sent := int64(0); sent < n; sent += int64(len(src)) {
				if _, err := from.Write(src[:min(int64(len(src)), n-sent)]); err != nil {
					errs <- err
					return
				}
			}
			if cw, ok := from.(interface{ CloseWrite() error }); ok {
				errs <- cw.CloseWrite()
			}
		}()
		go func() {
			defer wg.Done()
			got, err := io.CopyBuffer(io.Discard, io.LimitReader(to, n), make([]byte, 64<<10))
			if err == nil && got != n {
				err = fmt.Errorf("read %d of %d bytes", got, n)
			}
			errs <- err
		}()
	}
	start := time.Now()
	oneWay(c1, c2)
	total := n
	if both {
		oneWay(c2, c1)
		total *= 2
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return float64(total) / d.Seconds() / 1e6, nil
}

// xtlsRate moves n bytes through a new tunnel from a to b (and back at the
// same time, if both) and returns payload MB/s.
func xtlsRate(a, b *party, n int64, both bool) (float64, error) {
	c1, c2, err := pipe(a, b)
	if err != nil {
		return 0, err
	}
	defer c1.Close()
	defer c2.Close()
	return transfer(c1, c2, n, both)
}
