package xtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

const (
	aliceJID = "alice@example.net/phone"
	bobJID   = "bob@example.org/laptop"
)

// dialAccept opens a tunnel from a to b and returns both ends.
func dialAccept(t testing.TB, a, b *node, opts ...xtls.DialOption) (*xtls.Conn, *xtls.Conn, error) {
	t.Helper()
	ln := b.h.Listen()
	type res struct {
		c   *xtls.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			acc <- res{nil, err}
			return
		}
		acc <- res{c.(*xtls.Conn), nil}
	}()
	c1, err := a.h.Dial(context.Background(), b.addr, opts...)
	if err != nil {
		ln.Close()
		<-acc
		return nil, nil, err
	}
	r := <-acc
	return c1, r.c, r.err
}

func TestPinnedFirstUse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		b := w.join(bobJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		s1, s2 := c1.State(), c2.State()
		require.Equal(t, xtls.TrustFirstUse, s1.Trust)
		require.Equal(t, xtls.TrustFirstUse, s2.Trust)
		require.Equal(t, uint16(tls.VersionTLS13), s1.Version)
		require.Equal(t, tls.X25519MLKEM768, s1.CurveID)
		require.Equal(t, b.addr, s1.Peer)
		require.Equal(t, a.addr, s2.Peer)
		_, err = c1.Write([]byte("hello bob"))
		require.NoError(t, err)
		buf := make([]byte, 9)
		_, err = io.ReadFull(c2, buf)
		require.NoError(t, err)
		require.Equal(t, "hello bob", string(buf))
		require.NoError(t, c1.Close())
		got, err := io.ReadAll(c2)
		require.NoError(t, err)
		require.Empty(t, got)
		require.NoError(t, c2.Close())

		c1, c2, err = dialAccept(t, a, b)
		require.NoError(t, err)
		require.Equal(t, xtls.TrustPinned, c1.State().Trust)
		require.Equal(t, xtls.TrustPinned, c2.State().Trust)
		c1.Close()
		c2.Close()
	})
}

func TestMutualPKIX(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca, err := xtls.GenerateCA("Example Corp CA")
		require.NoError(t, err)
		roots := x509.NewCertPool()
		roots.AddCert(ca.Leaf)
		issue := func(addr string) tls.Certificate {
			c, err := xtls.IssueCertificate(ca, jid.MustParse(addr))
			require.NoError(t, err)
			return c
		}
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{Certificate: issue(aliceJID), RootCAs: roots})
		b := w.join(bobJID, xtls.Config{Certificate: issue(bobJID), RootCAs: roots})
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		require.Equal(t, xtls.TrustPKIX, c1.State().Trust)
		require.Equal(t, xtls.TrustPKIX, c2.State().Trust)
		require.Len(t, c1.State().PeerCertificates, 2)
		require.Equal(t, xtls.SPKIFingerprint(c1.State().PeerCertificate()), c1.State().Fingerprint)
		exchange(t, c1, c2, 100<<10)

		// A certificate from another CA is not trusted, and nothing else
		// trusts it here.
		mallory := w.join("mallory@example.net/m", xtls.Config{RootCAs: roots})
		_, _, err = dialAccept(t, a, mallory)
		require.ErrorIs(t, err, xtls.ErrUntrusted)
		var ue *xtls.UntrustedError
		require.ErrorAs(t, err, &ue)
		var ce *xtls.ChainError
		require.ErrorAs(t, err, &ce)
	})
}

// A pinned peer that presents another key fails with *PinMismatchError
// carrying both fingerprints, unless the application accepts the change.
func TestKeyChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pins := xtls.NewMemPinStore()
		w := newWorld(t)
		accept := false
		var asked *xtls.PinMismatchError
		a := w.join(aliceJID, xtls.Config{Pins: pins, TrustOnFirstUse: true, AcceptKeyChange: func(e *xtls.PinMismatchError) bool {
			asked = e
			return accept
		}})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		old := c1.State().Fingerprint
		c1.Close()
		c2.Close()

		// Bob reinstalls: a new key, new session.
		b.h.Close()
		b2 := w.join("bob@example.org/new", xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		_, _, err = dialAccept(t, a, b2)
		var pm *xtls.PinMismatchError
		require.ErrorAs(t, err, &pm)
		require.Equal(t, []xtls.Fingerprint{old}, pm.Pinned)
		require.Equal(t, xtls.SPKIFingerprint(b2.cfg.Certificate.Leaf), pm.Presented)
		require.Contains(t, err.Error(), pm.Presented.String())
		require.Same(t, asked, pm)
		fps, err := pins.Pins(jid.MustParse(bobJID).Bare())
		require.NoError(t, err)
		require.Equal(t, []xtls.Fingerprint{old}, fps, "a refused key is not pinned")

		accept = true
		c1, c2, err = dialAccept(t, a, b2)
		require.NoError(t, err)
		require.Equal(t, xtls.TrustApplication, c1.State().Trust)
		fps, err = pins.Pins(jid.MustParse(bobJID).Bare())
		require.NoError(t, err)
		require.Equal(t, []xtls.Fingerprint{pm.Presented}, fps, "the accepted key replaces the pin")
		c1.Close()
		c2.Close()
	})
}

// A certificate that names another JID fails with *IdentityError even when
// its chain is valid.
func TestIdentityMismatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ca, err := xtls.GenerateCA("CA")
		require.NoError(t, err)
		roots := x509.NewCertPool()
		roots.AddCert(ca.Leaf)
		carol, err := xtls.IssueCertificate(ca, jid.MustParse("carol@example.org"))
		require.NoError(t, err)
		good, err := xtls.IssueCertificate(ca, jid.MustParse(aliceJID))
		require.NoError(t, err)
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{Certificate: good, RootCAs: roots})
		b := w.join(bobJID, xtls.Config{Certificate: carol, RootCAs: roots})
		_, _, err = dialAccept(t, a, b)
		var ie *xtls.IdentityError
		require.ErrorAs(t, err, &ie)
		require.Equal(t, []string{"carol@example.org"}, ie.Names)
	})
}

// An expired certificate is refused however it would be trusted.
func TestExpiredCertificate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		short, err := xtls.GenerateCertificate(jid.MustParse(bobJID), xtls.WithValidity(time.Hour))
		require.NoError(t, err)
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		b := w.join(bobJID, xtls.Config{Certificate: short, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		c1.Close()
		c2.Close()
		time.Sleep(2 * time.Hour)
		_, _, err = dialAccept(t, a, b)
		var ee *xtls.CertificateExpiredError
		require.ErrorAs(t, err, &ee)
	})
}

func TestRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore(),
			AcceptPeer: func(p jid.JID) bool { return p.Bare().String() != "alice@example.net" }})
		_, _, err := dialAccept(t, a, b)
		require.ErrorIs(t, err, xtls.ErrRefused)
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.NotAcceptable})

		// Without a Listener, tunnels are refused too.
		c := w.join("carol@example.net/c", xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		_, err = a.h.Dial(context.Background(), c.addr)
		require.ErrorIs(t, err, xtls.ErrRefused)
	})
}

// A peer that does not offer XTLS, and one that is offline, are told apart.
func TestNotSupportedAndOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		plain := w.joinWith(bobJID, xtls.Config{}, true)
		_, err := a.h.Dial(context.Background(), plain.addr)
		require.ErrorIs(t, err, xtls.ErrNotSupported)
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.ServiceUnavailable})

		_, err = a.h.Dial(context.Background(), jid.MustParse("dave@example.net/gone"))
		require.ErrorIs(t, err, xtls.ErrPeerUnavailable)
		require.NotErrorIs(t, err, xtls.ErrNotSupported)
	})
}

// Both ends dial each other with the same sid at the same moment: exactly
// one tunnel, usable from both ends.
func TestSimultaneousDial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, xtlstest.Latency(10*time.Millisecond, 0))
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		a.h.Listen()
		b.h.Listen()
		type res struct {
			c   *xtls.Conn
			err error
		}
		r1, r2 := make(chan res), make(chan res)
		go func() { c, err := a.h.Dial(context.Background(), b.addr, xtls.WithSID("chat")); r1 <- res{c, err} }()
		go func() { c, err := b.h.Dial(context.Background(), a.addr, xtls.WithSID("chat")); r2 <- res{c, err} }()
		x, y := <-r1, <-r2
		require.NoError(t, x.err)
		require.NoError(t, y.err)
		require.True(t, x.c.State().Initiator)
		require.False(t, y.c.State().Initiator)
		require.Equal(t, "chat", y.c.State().SID)
		exchange(t, x.c, y.c, 10<<10)
		x.c.Close()
		y.c.Close()
	})
}
