package xtls_test

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

// A data IQ forged by a third JID with the tunnel's sid does not reach the
// tunnel: it is answered item-not-found and the tunnel goes on.
func TestForgedDataFromThirdJID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		m := w.joinWith("mallory@evil.example/m", xtls.Config{}, true)
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		forged := xstanza.Data{SID: c2.State().SID, Seq: 1, Payload: []byte("\x17\x03\x03\x00\x05owned")}
		var resp error
		r, err := m.s.SendIQ(context.Background(), stanza.IQ{To: b.addr, Type: stanza.SetIQ}.Wrap(forged.TokenReader()))
		require.NoError(t, err)
		_, resp = stanza.UnmarshalIQError(r, mustStart(t, r))
		r.Close()
		require.ErrorIs(t, resp, stanza.Error{Condition: stanza.ItemNotFound})
		exchange(t, c1, c2, 32<<10)
		c1.Close()
		c2.Close()
	})
}

func mustStart(t *testing.T, r xml.TokenReader) xml.StartElement {
	t.Helper()
	tok, err := r.Token()
	require.NoError(t, err)
	return tok.(xml.StartElement)
}

// A responder tears down a tunnel whose first byte is not a TLS handshake
// record: no plaintext, ever.
func TestNonTLSFirstByte(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		raw, e, _ := w.joinRaw(aliceJID)
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		ln := b.h.Listen()
		accepted := make(chan error, 1)
		go func() { _, err := ln.Accept(); accepted <- err }()
		c, err := e.Dial(context.Background(), b.addr, "")
		require.NoError(t, err)
		_, err = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		require.NoError(t, err)
		_, err = c.Read(make([]byte, 1))
		var ae *transport.AbortError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, stanza.PolicyViolation, ae.Condition)
		require.True(t, ae.Remote)
		ln.Close()
		require.ErrorIs(t, <-accepted, net.ErrClosed)
		_ = raw
	})
}

// A peer that offers only TLS below the policy (1.1, or 1.2 with CBC
// suites) fails the handshake with a *PolicyError that says so.
func TestWeakPeerRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(*tls.Config)
	}{
		{"tls1.1", func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }},
		{"cbc", func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
		}},
	} {
		t.Run(tc.name+"/server", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
				b, _, acc := w.joinRaw(bobJID)
				weak := &tls.Config{Certificates: []tls.Certificate{cert(t, bobJID)}, ClientAuth: tls.RequestClientCert}
				tc.cfg(weak)
				done := make(chan error, 1)
				go func() {
					c := <-acc
					s := tls.Server(c, weak)
					done <- s.Handshake()
					c.Close()
				}()
				_, err := a.h.Dial(context.Background(), b.addr)
				var pe *xtls.PolicyError
				require.ErrorAs(t, err, &pe, "%v", err)
				require.Contains(t, err.Error(), "weaker than the policy")
				require.Error(t, <-done)
			})
		})
		t.Run(tc.name+"/client", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				_, e, _ := w.joinRaw(aliceJID)
				logger, logged := newLogger()
				b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore(), Logger: logger})
				b.h.Listen()
				weak := &tls.Config{Certificates: []tls.Certificate{cert(t, aliceJID)}, InsecureSkipVerify: true}
				tc.cfg(weak)
				c, err := e.Dial(context.Background(), b.addr, "")
				require.NoError(t, err)
				err = tls.Client(c, weak).Handshake()
				require.Error(t, err)
				c.Close()
				synctest.Wait()
				require.Contains(t, logged(), "weaker than the policy")
			})
		})
	}
}

// A tunnel the peer ends without TLS close_notify reads as ErrTruncated, not
// as a clean end.
func TestTruncation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		_, err = c1.Write([]byte("partial"))
		require.NoError(t, err)
		require.NoError(t, c1.Tunnel().CloseWrite()) // the tunnel's close, no close_notify
		got, err := io.ReadAll(c2)
		require.Equal(t, "partial", string(got))
		require.ErrorIs(t, err, xtls.ErrTruncated)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		require.False(t, errors.Is(err, io.EOF))

		// With close_notify first, the same end reads as io.EOF.
		c3, c4, err := dialAccept(t, a, b)
		require.NoError(t, err)
		_, err = c3.Write([]byte("whole"))
		require.NoError(t, err)
		require.NoError(t, c3.CloseWrite())
		got, err = io.ReadAll(c4)
		require.NoError(t, err)
		require.Equal(t, "whole", string(got))
		_ = jid.JID{}
	})
}
