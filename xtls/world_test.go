package xtls_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// node is one XMPP client on a test network, with an xtls Handler.
type node struct {
	addr   jid.JID
	s      *xmpp.Session
	h      *xtls.Handler
	cfg    xtls.Config
	served chan error
}

type world struct {
	t     testing.TB
	n     *xtlstest.Network
	nodes []*node
}

func newWorld(t testing.TB, opts ...xtlstest.Option) *world {
	w := &world{t: t, n: xtlstest.NewNetwork(opts...)}
	t.Cleanup(w.close)
	return w
}

func (w *world) close() {
	for _, n := range w.nodes {
		if n.h != nil {
			n.h.Close()
		}
	}
	w.n.Close()
	for _, n := range w.nodes {
		<-n.served
	}
}

// join connects addr. A zero cfg.Certificate gets a fresh self-signed one.
// With noXTLS the session serves disco but no XTLS.
func (w *world) join(addr string, cfg xtls.Config) *node {
	return w.joinWith(addr, cfg, false)
}

func (w *world) joinWith(addr string, cfg xtls.Config, noXTLS bool) *node {
	t := w.t
	t.Helper()
	j := jid.MustParse(addr)
	if cfg.Certificate.Certificate == nil {
		c, err := xtls.GenerateCertificate(j)
		require.NoError(t, err)
		cfg.Certificate = c
	}
	s, err := w.n.Session(context.Background(), j)
	require.NoError(t, err)
	n := &node{addr: j, s: s, cfg: cfg, served: make(chan error, 1)}
	opts := []mux.Option{disco.Handle()}
	if !noXTLS {
		n.h = xtls.NewHandler(s, &cfg)
		opts = append(opts, n.h.Handle())
	}
	m := mux.New(stanza.NSClient, opts...) // before Serve runs: Caps hashes the mux
	go func() {
		err := s.Serve(m)
		if n.h != nil {
			n.h.SessionEnded(err)
		}
		n.served <- err
	}()
	w.nodes = append(w.nodes, n)
	return n
}

func cert(t testing.TB, addr string) tls.Certificate {
	t.Helper()
	c, err := xtls.GenerateCertificate(jid.MustParse(addr))
	require.NoError(t, err)
	return c
}

// joinRaw connects addr with a bare transport Endpoint and no TLS: a peer
// that can say anything, for tests of what xtls refuses.
func (w *world) joinRaw(addr string) (*node, *transport.Endpoint, chan *transport.Conn) {
	return w.joinRawWith(addr, nil)
}

// joinRawWith is joinRaw with the Endpoint configured by cfg.
func (w *world) joinRawWith(addr string, cfg *transport.Config) (*node, *transport.Endpoint, chan *transport.Conn) {
	t := w.t
	t.Helper()
	j := jid.MustParse(addr)
	s, err := w.n.Session(context.Background(), j)
	require.NoError(t, err)
	n := &node{addr: j, s: s, served: make(chan error, 1)}
	e := transport.NewEndpoint(s, cfg)
	acc := make(chan *transport.Conn, 16)
	e.SetAcceptFunc(func(c *transport.Conn) error { acc <- c; return nil })
	go func() {
		err := s.Serve(mux.New(stanza.NSClient, e.Handle()))
		e.SessionEnded(err)
		n.served <- err
	}()
	t.Cleanup(func() { e.Close() })
	w.nodes = append(w.nodes, n)
	return n, e, acc
}

// node joins addr with a fresh certificate, trusting on first use, without
// a testing.TB (for nettest's MakePipe).
func (w *world) node(addr string) (*node, error) {
	j := jid.MustParse(addr)
	c, err := xtls.GenerateCertificate(j)
	if err != nil {
		return nil, err
	}
	s, err := w.n.Session(context.Background(), j)
	if err != nil {
		return nil, err
	}
	n := &node{addr: j, s: s, served: make(chan error, 1)}
	n.cfg = xtls.Config{Certificate: c, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true}
	n.h = xtls.NewHandler(s, &n.cfg)
	m := mux.New(stanza.NSClient, disco.Handle(), n.h.Handle())
	go func() {
		err := s.Serve(m)
		n.h.SessionEnded(err)
		n.served <- err
	}()
	w.nodes = append(w.nodes, n)
	return n, nil
}
