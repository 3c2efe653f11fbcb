package integration

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// Two people pair through a real Prosody with a code they read to each
// other: both pin, the next connection needs no code. Then a wrong code
// fails on both ends and pins nothing.
func TestPairingThroughProsody(t *testing.T) {
	shared.once.Do(startShared)
	require.NoError(t, shared.err, "starting the shared servers")
	srv := shared.prosody

	code := xtls.NewPairingCode()
	pinsA, pinsB := xtls.NewMemPinStore(), xtls.NewMemPinStore()
	certA, err := xtls.GenerateCertificate(jid.MustParse("alice@" + srv.Domain()))
	require.NoError(t, err)
	certB, err := xtls.GenerateCertificate(jid.MustParse("bob@" + srv.Domain()))
	require.NoError(t, err)
	withCode := func(cert tls.Certificate, pins xtls.PinStore, code string) xtls.Config {
		return xtls.Config{Certificate: cert, Pins: pins, PairingCode: func(jid.JID) ([]byte, bool) { return []byte(code), true }}
	}
	a := connect(t, srv, "alice", partyOpt{cfg: withCode(certA, pinsA, code)})
	b := connect(t, srv, "bob", partyOpt{cfg: withCode(certB, pinsB, code)})
	c1, c2 := tunnel(t, a, b)
	require.Equal(t, xtls.TrustPaired, c1.State().Trust)
	require.Equal(t, xtls.TrustPaired, c2.State().Trust)
	exchange(t, c1, c2, 1<<20)
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())
	fpsA, err := pinsA.Pins(b.addr.Bare())
	require.NoError(t, err)
	require.Equal(t, []xtls.Fingerprint{c1.State().Fingerprint}, fpsA)
	fpsB, err := pinsB.Pins(a.addr.Bare())
	require.NoError(t, err)
	require.Equal(t, []xtls.Fingerprint{c2.State().Fingerprint}, fpsB)

	// The same keys, no code any more: pinned.
	a.close()
	b.close()
	a2 := connect(t, srv, "alice", partyOpt{cfg: xtls.Config{Certificate: certA, Pins: pinsA}})
	b2 := connect(t, srv, "bob", partyOpt{cfg: xtls.Config{Certificate: certB, Pins: pinsB}})
	c1, c2 = tunnel(t, a2, b2)
	require.Equal(t, xtls.TrustPinned, c1.State().Trust)
	require.Equal(t, xtls.TrustPinned, c2.State().Trust)
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())

	// Carol and dave hold different codes: both ends fail, nothing pinned.
	pinsC, pinsD := xtls.NewMemPinStore(), xtls.NewMemPinStore()
	c := connect(t, srv, "carol", partyOpt{cfg: withCode(tls.Certificate{}, pinsC, "1111 2222 3333")})
	d := connect(t, srv, "dave", partyOpt{cfg: withCode(tls.Certificate{}, pinsD, "1111 2222 4444")})
	ln := d.h.Listen()
	accepted := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			conn.Close()
		}
		accepted <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err = c.h.Dial(ctx, d.addr)
	var pe *xtls.PairingError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, xtls.PairingWrongCode, pe.Reason)
	ln.Close()
	require.Error(t, <-accepted, "dave's listener handed out nothing")
	for _, p := range []struct {
		store xtls.PinStore
		peer  jid.JID
	}{{pinsC, d.addr}, {pinsD, c.addr}} {
		fps, err := p.store.Pins(p.peer.Bare())
		require.NoError(t, err)
		require.Empty(t, fps)
	}
}
