package xtls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

const (
	alpn3 = "xmpp-xtls/3"
	alpn4 = "xmpp-xtls/4"
	alpn5 = "xmpp-xtls/5"
)

// pinOther pins a key that is not alice's for alice on n: n then refuses
// alice's certificate with a TLS alert.
func pinOther(t *testing.T, pins *xtls.MemPinStore) {
	t.Helper()
	other := cert(t, aliceJID)
	require.NoError(t, pins.AddPin(jid.MustParse(aliceJID), xtls.SPKIFingerprint(other.Leaf)))
}

// Dial does not report success before the responder has accepted our
// certificate: a responder that has another key of ours pinned makes Dial
// fail with ErrNotTrustedByPeer, in TLS 1.3 (where the client's handshake
// completes before the server has checked its certificate) as in 1.2. The
// peer's TLS alert stays reachable with errors.As.
func TestDialFailsWhenPeerRefusesUs(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
				bobPins := xtls.NewMemPinStore()
				pinOther(t, bobPins)
				b := w.join(bobJID, xtls.Config{Pins: bobPins, TrustOnFirstUse: true})
				xtls.SetMaxVersion(a.h, version)
				ln := b.h.Listen()
				go ln.Accept()
				_, err := a.h.Dial(context.Background(), b.addr)
				ln.Close()
				require.ErrorIs(t, err, xtls.ErrNotTrustedByPeer)
				var nt *xtls.NotTrustedByPeerError
				require.ErrorAs(t, err, &nt)
				require.Equal(t, b.addr, nt.Peer)
				require.Equal(t, "tls: bad certificate", nt.Reason)
				var op *net.OpError
				require.ErrorAs(t, err, &op)
				require.Equal(t, "remote error", op.Op)
			})
		})
	}
}

// A responder that would trust the initiator only after pairing answers
// mode A with Fail 5 (contract 3): Dial fails with a remote
// PairingRequired. With a contract 2 initiator, Dial succeeds and the first
// Read fails, as before.
func TestPairingRequired(t *testing.T) {
	for _, contract := range []int{3, 2} {
		t.Run(fmt.Sprint("contract", contract), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
				if contract == 2 {
					xtls.UseContract2(a.h)
				}
				logger, logged := newLogger()
				cb, _ := pairing("1234 5678 9012")
				cb.Logger = logger
				b := w.join(bobJID, cb)
				b.h.Listen()
				c, err := a.h.Dial(context.Background(), b.addr)
				if contract == 3 {
					var pe *xtls.PairingError
					require.ErrorAs(t, err, &pe)
					require.Equal(t, xtls.PairingRequired, pe.Reason)
					require.True(t, pe.Remote)
				} else {
					require.NoError(t, err) // alice trusted bob on first use
					_, err = c.Read(make([]byte, 1))
					require.Error(t, err)
				}
				synctest.Wait()
				require.Contains(t, logged(), "pairing required")
			})
		})
	}
}

// The contract is negotiated by ALPN: two Handlers use contract 4; with a
// contract 3 peer, either way round, contract 3 (no records inside TLS, no
// bytestreams); with a peer that offers no ALPN (contract 2) the tunnel
// works without the verdict frame.
func TestContractNegotiation(t *testing.T) {
	for _, tc := range []struct {
		a, b int // the contract each end speaks
		want string
	}{
		{5, 5, alpn5},
		{4, 5, alpn4},
		{5, 4, alpn4},
		{3, 5, alpn3},
		{5, 2, ""},
		{4, 4, alpn4},
		{3, 4, alpn3},
		{4, 3, alpn3},
		{3, 3, alpn3},
		{2, 4, ""},
		{4, 2, ""},
		{2, 2, ""},
	} {
		t.Run(fmt.Sprintf("alice%d/bob%d", tc.a, tc.b), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
				b := w.join(bobJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
				for _, x := range []struct {
					contract int
					h        *xtls.Handler
				}{{tc.a, a.h}, {tc.b, b.h}} {
					switch x.contract {
					case 2:
						xtls.UseContract2(x.h)
					case 3:
						xtls.UseContract3(x.h)
					case 4:
						xtls.UseContract4(x.h)
					}
				}
				c1, c2, err := dialAccept(t, a, b)
				require.NoError(t, err)
				require.Equal(t, tc.want, c1.ConnectionState().NegotiatedProtocol)
				require.Equal(t, tc.want, c2.ConnectionState().NegotiatedProtocol)
				exchange(t, c1, c2, 64<<10)
				if tc.want != alpn4 && tc.want != alpn5 {
					err := c1.MoveToBytestream(context.Background())
					require.ErrorIs(t, err, xtls.ErrNoBytestream)
					require.ErrorContains(t, err, "contract 4")
				}
				require.NoError(t, c1.Close())
				require.NoError(t, c2.Close())
			})
		})
	}
}

// A responder that reads an unknown mode byte aborts the tunnel with
// policy-violation: the initiator reads an abort, never a clean end of
// stream.
func TestUnknownModeByteAborts(t *testing.T) {
	for _, protos := range [][]string{{alpn3}, nil} {
		t.Run(fmt.Sprint(protos), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				raw, e, _ := w.joinRaw(aliceJID)
				failed := make(chan error, 1)
				b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore(),
					AcceptFailed: func(_ jid.JID, err error) { failed <- err }})
				ln := b.h.Listen()
				go ln.Accept()
				tc, err := e.Dial(context.Background(), b.addr, "")
				require.NoError(t, err)
				c := tls.Client(tc, &tls.Config{
					Certificates:       []tls.Certificate{cert(t, raw.addr.String())},
					InsecureSkipVerify: true,
					NextProtos:         protos,
				})
				require.NoError(t, c.Handshake())
				_, err = c.Write([]byte{'Z'})
				require.NoError(t, err)
				_, err = c.Read(make([]byte, 1))
				require.NotErrorIs(t, err, io.EOF)
				var ae *transport.AbortError
				require.ErrorAs(t, err, &ae)
				require.Equal(t, stanza.PolicyViolation, ae.Condition)
				require.True(t, ae.Remote)
				require.ErrorContains(t, <-failed, "mode byte 0x5a")
				ln.Close()
			})
		})
	}
}

// fakeResponder accepts one tunnel as a TLS server that offers contract 3,
// reads the mode byte and answers it with verdict.
func fakeResponder(t *testing.T, acc chan *transport.Conn, addr jid.JID, verdict []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		tc := <-acc
		s := tls.Server(tc, &tls.Config{
			Certificates: []tls.Certificate{cert(t, addr.String())},
			ClientAuth:   tls.RequireAnyClientCert,
			NextProtos:   []string{alpn3},
		})
		var m [1]byte
		if _, err := io.ReadFull(s, m[:]); err != nil {
			done <- err
			return
		}
		if m[0] != 'A' {
			done <- fmt.Errorf("mode %q", m[0])
			return
		}
		if _, err := s.Write(verdict); err != nil {
			done <- err
			return
		}
		_, err := s.Read(make([]byte, 1))
		done <- err
	}()
	return done
}

// The initiator reads the responder's verdict: Fail 6 (a responder that
// decides after the handshake) is ErrNotTrustedByPeer; anything but an OK
// or Fail frame makes the initiator abort with policy-violation.
func TestVerdictFromAnotherResponder(t *testing.T) {
	for i, tc := range []struct {
		verdict   []byte
		want      error
		wantAbort bool
	}{
		0: {[]byte{0xff, 0, 1, 6}, xtls.ErrNotTrustedByPeer, false},
		1: {[]byte{0xff, 0, 1, 5}, &xtls.PairingError{}, false},
		2: {[]byte("SSH-2.0-OpenSSH_9.2\r\n"), nil, true},
		3: {[]byte{0x04, 0, 1, 0}, nil, true},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
				raw, _, acc := w.joinRaw(bobJID)
				done := fakeResponder(t, acc, raw.addr, tc.verdict)
				_, err := a.h.Dial(context.Background(), raw.addr)
				require.Error(t, err)
				var pe *xtls.PairingError
				switch {
				case tc.want == xtls.ErrNotTrustedByPeer:
					require.ErrorIs(t, err, xtls.ErrNotTrustedByPeer)
				case errors.As(tc.want, &pe):
					require.ErrorAs(t, err, &pe)
					require.Equal(t, xtls.PairingRequired, pe.Reason)
					require.True(t, pe.Remote)
				}
				rerr := <-done
				if tc.wantAbort {
					require.ErrorContains(t, err, "verdict")
					var ae *transport.AbortError
					require.ErrorAs(t, rerr, &ae)
					require.Equal(t, stanza.PolicyViolation, ae.Condition)
				}
			})
		})
	}
}

// failingPins is a PinStore that cannot record anything.
type failingPins struct{ *xtls.MemPinStore }

func (failingPins) AddPin(jid.JID, xtls.Fingerprint) error { return errors.New("disk full") }

// A responder that cannot record the pin its trust decision needs does not
// accept the tunnel: it sends Fail 2 instead of OK, and the initiator's Dial
// fails instead of returning a tunnel the responder has given up.
func TestVerdictWhenResponderCannotRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		failed := make(chan error, 1)
		b := w.join(bobJID, xtls.Config{Pins: failingPins{xtls.NewMemPinStore()}, TrustOnFirstUse: true,
			AcceptFailed: func(_ jid.JID, err error) { failed <- err }})
		ln := b.h.Listen()
		go ln.Accept()
		_, err := a.h.Dial(context.Background(), b.addr)
		require.ErrorContains(t, err, "failed after the handshake (exchange broken)")
		require.ErrorContains(t, <-failed, "disk full")
		ln.Close()
	})
}
