package xtls_test

import (
	"context"
	"crypto/tls"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// An initiator whose first write after the handshake fails because the
// responder has already refused it and ended the tunnel reports the
// refusal, which is still buffered, not the broken write: a TLS alert is
// ErrNotTrustedByPeer, a pairing Fail frame a remote *PairingError. The
// initiator here wants to pair; its PairingCode, asked again between the
// handshake and the mode byte, waits until the responder's refusal and
// abort have arrived, so that the write meets the abort every time.
func TestRefusalReadBeforeWriteError(t *testing.T) {
	for _, tc := range []struct {
		name string
		// respond plays bob, who refuses alice, and returns once bob has
		// sent its refusal and aborted the tunnel.
		respond func(t *testing.T, w *world) (bob jid.JID, refused <-chan struct{})
		check   func(t *testing.T, err error)
	}{
		{"alert", func(t *testing.T, w *world) (jid.JID, <-chan struct{}) {
			// Bob has another key of alice's pinned: its TLS stack refuses
			// her certificate with an alert, after her handshake is done.
			pins := xtls.NewMemPinStore()
			pinOther(t, pins)
			refused := make(chan struct{}, 1)
			b := w.join(bobJID, xtls.Config{Pins: pins, AcceptFailed: func(jid.JID, error) { refused <- struct{}{} }})
			ln := b.h.Listen()
			t.Cleanup(func() { ln.Close() })
			return b.addr, refused
		}, func(t *testing.T, err error) {
			require.ErrorIs(t, err, xtls.ErrNotTrustedByPeer)
		}},
		{"fail frame", func(t *testing.T, w *world) (jid.JID, <-chan struct{}) {
			// Another implementation that has no code for alice says so
			// with Fail 3 as soon as its handshake is done, then aborts.
			raw, _, acc := w.joinRaw(bobJID)
			refused := make(chan struct{})
			go func() {
				defer close(refused)
				tc := <-acc
				s := tls.Server(tc, &tls.Config{
					Certificates: []tls.Certificate{cert(t, raw.addr.String())},
					ClientAuth:   tls.RequireAnyClientCert,
					NextProtos:   []string{alpn4},
				})
				if err := s.Handshake(); err != nil {
					t.Error(err)
					return
				}
				_, err := s.Write([]byte{0xff, 0, 1, byte(xtls.PairingNoCode)})
				if err == nil {
					err = tc.Flush(context.Background())
				}
				if err != nil {
					t.Error(err)
				}
				tc.Abort(stanza.NotAuthorized, "no pairing code")
			}()
			return raw.addr, refused
		}, func(t *testing.T, err error) {
			var pe *xtls.PairingError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, xtls.PairingNoCode, pe.Reason)
			require.True(t, pe.Remote)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				bob, refused := tc.respond(t, w)
				asked := 0
				a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), PairingCode: func(jid.JID) ([]byte, bool) {
					// Asked first while verifying bob's certificate, then
					// once the handshake is done, before the mode byte.
					if asked++; asked == 2 {
						<-refused
						synctest.Wait() // the refusal and the abort have arrived
					}
					return []byte("1234 5678 9012"), true
				}})
				_, err := a.h.Dial(context.Background(), bob)
				t.Log(err)
				require.Equal(t, 2, asked)
				tc.check(t, err)
			})
		})
	}
}
