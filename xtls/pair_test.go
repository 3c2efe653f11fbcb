package xtls_test

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/cpace"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// pairing returns a Config that trusts only pins and pairing with code.
func pairing(code string) (xtls.Config, *xtls.MemPinStore) {
	pins := xtls.NewMemPinStore()
	return xtls.Config{Pins: pins, PairingCode: func(jid.JID) ([]byte, bool) { return []byte(code), code != "" }}, pins
}

func pinsOf(t *testing.T, p *xtls.MemPinStore, who string) []xtls.Fingerprint {
	t.Helper()
	fps, err := p.Pins(jid.MustParse(who).Bare())
	require.NoError(t, err)
	return fps
}

// The right code on both ends: both pin each other, TrustPaired; the next
// connection needs no code (TrustPinned).
func TestPairingRightCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		code := xtls.NewPairingCode()
		w := newWorld(t)
		ca, pa := pairing(code)
		cb, pb := pairing(code)
		a := w.join(aliceJID, ca)
		b := w.join(bobJID, cb)
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		require.Equal(t, xtls.TrustPaired, c1.State().Trust)
		require.Equal(t, xtls.TrustPaired, c2.State().Trust)
		require.Equal(t, []xtls.Fingerprint{c1.State().Fingerprint}, pinsOf(t, pa, bobJID))
		require.Equal(t, []xtls.Fingerprint{c2.State().Fingerprint}, pinsOf(t, pb, aliceJID))
		exchange(t, c1, c2, 4096)
		c1.Close()
		c2.Close()

		// The codes are gone; the pins remain.
		a.cfg.PairingCode, b.cfg.PairingCode = nil, nil
		a2 := w.join("alice@example.net/tablet", xtls.Config{Certificate: a.cfg.Certificate, Pins: pa})
		c1, c2, err = dialAccept(t, a2, b)
		require.NoError(t, err)
		require.Equal(t, xtls.TrustPinned, c1.State().Trust)
		require.Equal(t, xtls.TrustPinned, c2.State().Trust)
		c1.Close()
		c2.Close()
	})
}

// A wrong code fails on both ends with *PairingError, pins nothing, and not
// one application byte crosses either way.
func TestPairingWrongCode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		ca, pa := pairing("1111 2222 3333")
		cb, pb := pairing("1111 2222 3334")
		failed := make(chan error, 1)
		cb.AcceptFailed = func(peer jid.JID, err error) {
			require.Equal(t, aliceJID, peer.String())
			failed <- err
		}
		a := w.join(aliceJID, ca)
		b := w.join(bobJID, cb)
		ln := b.h.Listen()
		accepted := make(chan error, 1)
		go func() { _, err := ln.Accept(); accepted <- err }()
		_, err := a.h.Dial(context.Background(), b.addr)
		var pe *xtls.PairingError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, xtls.PairingWrongCode, pe.Reason)
		require.Equal(t, 2, pe.Left)
		require.Contains(t, err.Error(), "wrong code")
		require.Empty(t, pinsOf(t, pa, bobJID))
		synctest.Wait()
		require.Empty(t, pinsOf(t, pb, aliceJID))
		// Bob's application learns why (Config.AcceptFailed).
		var bpe *xtls.PairingError
		require.ErrorAs(t, <-failed, &bpe)
		require.Equal(t, xtls.PairingWrongCode, bpe.Reason)
		// Bob's Listener never hands out the tunnel.
		ln.Close()
		require.ErrorIs(t, <-accepted, net.ErrClosed)
	})
}

// After three failures with the same code, the code is dead on both ends;
// a new code works.
func TestPairingAttemptLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		ca, _ := pairing("1111 2222 3333")
		cb, pb := pairing("9999 8888 7777")
		a := w.join(aliceJID, ca)
		b := w.join(bobJID, cb)
		b.h.Listen()
		for want := 2; want >= 0; want-- {
			_, err := a.h.Dial(context.Background(), b.addr)
			var pe *xtls.PairingError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, xtls.PairingWrongCode, pe.Reason)
			require.Equal(t, want, pe.Left)
		}
		// Three failed handshakes: bob refuses alice's starts for a while
		// (Config.MaxPending). Wait it out.
		time.Sleep(time.Minute)
		_, err := a.h.Dial(context.Background(), b.addr)
		var pe *xtls.PairingError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, xtls.PairingCodeDead, pe.Reason)
		require.Contains(t, err.Error(), "make a new one")
		// Bob's code for alice is dead too: three online guesses were made
		// against it. Even the right code from alice is refused now.
		time.Sleep(time.Minute)
		_, err = a.h.Dial(context.Background(), b.addr, xtls.WithPairingCode("9999 8888 7777"))
		require.ErrorAs(t, err, &pe)
		require.Equal(t, xtls.PairingCodeDead, pe.Reason)
		require.True(t, pe.Remote)
		// A fresh code on both sides works.
		fresh := xtls.NewPairingCode()
		b.h.Close()
		cb2, _ := pairing(fresh)
		cb2.Pins = pb
		b2 := w.join("bob@example.org/desk", cb2)
		c1, c2, err := dialAccept(t, a, b2, xtls.WithPairingCode(fresh))
		require.NoError(t, err)
		require.Equal(t, xtls.TrustPaired, c1.State().Trust)
		c1.Close()
		c2.Close()
	})
}

// A guesser who walks away as soon as it has the responder's CPace message
// (enough to test one guess offline) has still used up a try: after three
// such attempts the responder answers the next with "code used up" instead
// of another CPace message.
func TestPairingAbandonedAttemptCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		_, e, _ := w.joinRaw(aliceJID)
		cb, pins := pairing("9999 8888 7777")
		b := w.join(bobJID, cb)
		b.h.Listen()
		own := &tls.Config{Certificates: []tls.Certificate{cert(t, aliceJID)}, InsecureSkipVerify: true}
		attempt := func() (frameType byte, body []byte) {
			c, err := e.Dial(context.Background(), b.addr, "")
			require.NoError(t, err)
			defer c.Close()
			tc := tls.Client(c, own)
			require.NoError(t, tc.Handshake())
			_, ya, err := cpace.Start(nil, []byte("123412341234"), []byte("ci"), []byte("sid"), nil)
			require.NoError(t, err)
			// The mode byte, then a CPace A frame: type, 16-bit length, Ya.
			_, err = tc.Write(append([]byte{'P', 1, 0, byte(len(ya))}, ya...))
			require.NoError(t, err)
			var head [3]byte
			_, err = io.ReadFull(tc, head[:])
			require.NoError(t, err)
			body = make([]byte, int(head[1])<<8|int(head[2]))
			_, err = io.ReadFull(tc, body)
			require.NoError(t, err)
			return head[0], body
		}
		for range 3 {
			typ, body := attempt()
			require.Equal(t, byte(2), typ, "a CPace B frame")
			require.Len(t, body, 64)
		}
		typ, body := attempt()
		require.Equal(t, byte(0xff), typ, "a fail frame")
		require.Equal(t, []byte{byte(xtls.PairingCodeDead)}, body)
		require.Empty(t, pinsOf(t, pins, aliceJID))
	})
}

// A relay that terminates TLS on both sides with certificates of its own
// and forwards the pairing messages between them cannot make pairing
// succeed: each side's CPace is bound to its own TLS connection's exporter.
// Nor can it replay messages recorded from another connection.
func TestPairingRelayFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		code := xtls.NewPairingCode()
		aliceA := jid.MustParse(aliceJID)
		bobA := jid.MustParse(bobJID)
		malloryA := jid.MustParse("mallory@evil.example/m")
		w := newWorld(t, xtlstest.Intercept(func(s xtlstest.Stanza) (jid.JID, bool) {
			switch {
			case s.Sender.Equal(aliceA) && s.To.Equal(bobA), s.Sender.Equal(bobA) && s.To.Equal(aliceA):
				return malloryA, true
			}
			return s.To, true
		}))
		ca, pa := pairing(code)
		cb, pb := pairing(code)
		a := w.join(aliceJID, ca)
		b := w.join(bobJID, cb)
		b.h.Listen()
		relay := newRelay(t, w, malloryA, aliceA, bobA)

		for _, replay := range []bool{false, true} {
			relay.replay = replay
			_, err := a.h.Dial(context.Background(), b.addr)
			var pe *xtls.PairingError
			require.ErrorAs(t, err, &pe, "replay=%v", replay)
			require.Equal(t, xtls.PairingWrongCode, pe.Reason)
			synctest.Wait()
			require.Empty(t, pinsOf(t, pa, bobJID))
			require.Empty(t, pinsOf(t, pb, aliceJID))
			require.NoError(t, relay.err())
		}
		require.Equal(t, 2, relay.sessions())
	})
}

// relay is a man in the middle: mallory's session receives what alice and
// bob send each other (the network's Intercept) and answers as either.
type relay struct {
	t         *testing.T
	mu        sync.Mutex
	n         int
	recorded  [][]byte // alice's pairing bytes from the first run
	replay    bool
	firstErr  error
	toBob     *transport.Endpoint
	asBobCert tls.Certificate
	asAlice   tls.Certificate
}

func (r *relay) sessions() int { r.mu.Lock(); defer r.mu.Unlock(); return r.n }
func (r *relay) err() error    { r.mu.Lock(); defer r.mu.Unlock(); return r.firstErr }

func newRelay(t *testing.T, w *world, mallory, alice, bob jid.JID) *relay {
	s, err := w.n.Session(context.Background(), mallory, xtlstest.Spoofing())
	require.NoError(t, err)
	r := &relay{t: t}
	r.asBobCert, err = xtls.GenerateCertificate(bob)
	require.NoError(t, err)
	r.asAlice, err = xtls.GenerateCertificate(alice)
	require.NoError(t, err)
	// One endpoint plays bob to alice, the other alice to bob; each sends
	// with the from it impersonates.
	asBob := transport.NewEndpoint(spoofed{s, bob}, nil)
	asAlice := transport.NewEndpoint(spoofed{s, alice}, nil)
	r.toBob = asAlice
	asBob.SetAcceptFunc(func(c *transport.Conn) error {
		go r.run(c, bob)
		return nil
	})
	byTo := func(iq stanza.IQ) *transport.Endpoint {
		if iq.To.Equal(bob) {
			return asBob
		}
		return asAlice
	}
	h := mux.IQHandlerFunc(func(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
		return byTo(iq).HandleIQ(iq, t, start)
	})
	served := make(chan struct{})
	go func() {
		defer close(served)
		m := mux.New(stanza.NSClient, transport.HandleWith(h))
		err := s.Serve(m)
		asBob.SessionEnded(err)
		asAlice.SessionEnded(err)
	}()
	w.nodes = append(w.nodes, &node{addr: mallory, s: s, served: make(chan error, 1)})
	nd := w.nodes[len(w.nodes)-1]
	go func() { <-served; nd.served <- nil }()
	t.Cleanup(func() { asBob.Close(); asAlice.Close() })
	return r
}

// run terminates alice's TLS as bob, opens its own TLS to bob as alice, and
// forwards what follows each way (or replays alice's recorded bytes).
func (r *relay) run(fromAlice *transport.Conn, bob jid.JID) {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	fail := func(err error) {
		r.mu.Lock()
		if r.firstErr == nil {
			r.firstErr = err
		}
		r.mu.Unlock()
	}
	sa := tls.Server(fromAlice, &tls.Config{Certificates: []tls.Certificate{r.asBobCert}, ClientAuth: tls.RequireAnyClientCert})
	if err := sa.Handshake(); err != nil {
		fail(err)
		return
	}
	tb, err := r.toBob.Dial(context.Background(), bob, "")
	if err != nil {
		fail(err)
		return
	}
	sb := tls.Client(tb, &tls.Config{Certificates: []tls.Certificate{r.asAlice}, InsecureSkipVerify: true})
	if err := sb.Handshake(); err != nil {
		fail(err)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if r.replay {
			r.mu.Lock()
			old := r.recorded
			r.mu.Unlock()
			for _, b := range old {
				sb.Write(b)
			}
			io.Copy(io.Discard, sa)
		} else {
			buf := make([]byte, 4096)
			for {
				n, err := sa.Read(buf)
				if n > 0 {
					r.mu.Lock()
					r.recorded = append(r.recorded, append([]byte(nil), buf[:n]...))
					r.mu.Unlock()
					sb.Write(buf[:n])
				}
				if err != nil {
					break
				}
			}
		}
		sb.Close()
	}()
	go func() {
		defer wg.Done()
		io.Copy(sa, sb)
		sa.Close()
	}()
	wg.Wait()
}

// spoofed is a transport Session that sends as someone else (the network
// keeps a spoofing session's from).
type spoofed struct {
	*xmpp.Session
	as jid.JID
}

func (s spoofed) LocalAddr() jid.JID { return s.as }

// TokenWriter writes stanzas with our from.
func (s spoofed) TokenWriter() xmlstream.TokenWriteFlushCloser {
	return &withFrom{TokenWriteFlushCloser: s.Session.TokenWriter(), from: s.as.String()}
}

// withFrom adds a from attribute to each stanza's start element.
type withFrom struct {
	xmlstream.TokenWriteFlushCloser
	from  string
	depth int
}

func (w *withFrom) EncodeToken(tok xml.Token) error {
	switch t := tok.(type) {
	case xml.StartElement:
		if w.depth == 0 {
			t.Attr = append(t.Attr, xml.Attr{Name: xml.Name{Local: "from"}, Value: w.from})
			tok = t
		}
		w.depth++
	case xml.EndElement:
		w.depth--
	}
	return w.TokenWriteFlushCloser.EncodeToken(tok)
}
