package xtls_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	xstanza "github.com/xmppxtls/xtls/stanza"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// cut ends n's session from the network's side and waits until its
// Handler has heard.
func (w *world) cut(n *node) {
	w.t.Helper()
	require.NoError(w.t, w.n.Disconnect(n.s.LocalAddr(), stream.SystemShutdown))
	<-n.served
}

// rejoin connects n again as addr (a new resource of its account) and
// gives its Handler the new session.
func (w *world) rejoin(n *node, addr string) {
	t := w.t
	t.Helper()
	s, err := w.n.Session(context.Background(), jid.MustParse(addr))
	require.NoError(t, err)
	n.s, n.addr = s, s.LocalAddr()
	m := mux.New(stanza.NSClient, disco.Handle(), n.h.Handle())
	go func() {
		err := s.Serve(m)
		n.h.SessionEnded(err)
		n.served <- err
	}()
	require.NoError(t, n.h.Reattach(s))
}

// starts counts the XTLS starts the network carries: each is a tunnel, and
// a TLS handshake.
type starts struct{ n atomic.Int32 }

func (s *starts) trace(st xtlstest.Stanza) {
	if st.Name == "iq" && bytes.Contains(st.Raw, []byte("<start ")) {
		s.n.Add(1)
	}
}

// Issue 20's end-to-end test: a 64 MiB transfer during which the sender's
// session is cut three times and the receiver's once, each replaced after
// 0.5 to 5 s by a session with a new resource, arrives exact over the one
// tunnel and its one TLS handshake; with the faults of the transport's
// end-to-end test on top too. synctest checks that no goroutine is left.
func TestReattachDuringTransfer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []xtlstest.Option
	}{
		{"clean", nil},
		{"faults", []xtlstest.Option{xtlstest.Seed(5), xtlstest.Duplicate(0.02), xtlstest.Reorder(0.02), xtlstest.Drop(0.01)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var st starts
				w := newWorld(t, append(tc.opts, xtlstest.Trace(st.trace))...)
				cfg := xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true}
				a := w.join(aliceJID, cfg)
				b := w.join(bobJID, cfg)
				c1, c2, err := dialAccept(t, a, b)
				require.NoError(t, err)

				const size = 64 << 20
				want := sha256.New()
				werr := make(chan error, 1)
				go func() {
					src := io.LimitReader(rand.NewChaCha8([32]byte{7}), size)
					_, err := io.Copy(c1, io.TeeReader(src, want))
					if err == nil {
						err = c1.Close()
					}
					werr <- err
				}()
				// The reader stops at each fifth of the transfer until the
				// test has taken note (mark), so that each cut falls there.
				var got atomic.Int64
				h := sha256.New()
				rerr := make(chan error, 1)
				mark := make(chan struct{})
				go func() {
					buf := make([]byte, 64<<10)
					fifth := 1
					for {
						n, err := c2.Read(buf)
						h.Write(buf[:n])
						if k := got.Add(int64(n)); fifth < 5 && k >= int64(fifth)*size/5 {
							mark <- struct{}{}
							fifth++
						}
						if err != nil {
							rerr <- err
							return
						}
					}
				}()
				gaps := []time.Duration{500 * time.Millisecond, 2 * time.Second, 5 * time.Second, time.Second}
				for i, who := range []*node{a, a, b, a} {
					<-mark
					w.cut(who)
					time.Sleep(gaps[i]) // the client is away
					w.rejoin(who, fmt.Sprintf("%s/r%d", who.addr.Bare(), i))
				}
				require.ErrorIs(t, <-rerr, io.EOF)
				require.NoError(t, <-werr)
				require.Equal(t, int64(size), got.Load())
				require.Equal(t, want.Sum(nil), h.Sum(nil))
				require.Equal(t, int32(1), st.n.Load(), "one tunnel, one TLS handshake")
				require.Equal(t, "alice@example.net/r3", c2.State().Peer.String())
				require.Equal(t, "bob@example.org/r2", c1.State().Peer.String())
				require.Equal(t, "alice@example.net/r3", c1.State().Local.String())
				require.GreaterOrEqual(t, c1.Reattachments(), 4)
				require.GreaterOrEqual(t, c2.Reattachments(), 4)
				require.NoError(t, c2.Close())
			})
		})
	}
}

// A forged re-attach — from a third account, or from the right account
// with a proof that is not the tunnel's — is refused, and the tunnel goes
// on unaffected; a peer that does not come back within Config.Reattach
// leaves a typed error.
func TestReattachForgedAndLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		cfg := xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true, Reattach: 10 * time.Second}
		a := w.join(aliceJID, cfg)
		b := w.join(bobJID, cfg)
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		sid := c2.State().SID

		// Other sessions claim to continue alice's tunnel: another account,
		// and another resource of alice's without the tunnel's key (a
		// server can make one). Both are refused; the tunnel is unaffected.
		for _, tc := range []struct {
			from string
			cond stanza.Condition
		}{
			{"mallory@example.net/m", stanza.ItemNotFound},
			{"alice@example.net/forger", stanza.NotAuthorized},
		} {
			n, _, _ := w.joinRaw(tc.from)
			r := xstanza.Reattach{SID: sid, Old: aliceJID, Counter: 1, Proof: make([]byte, xstanza.ProofSize)}
			err := n.s.UnmarshalIQElement(context.Background(), r.TokenReader(), stanza.IQ{To: b.addr, Type: stanza.SetIQ}, nil)
			require.ErrorIs(t, err, stanza.Error{Condition: tc.cond}, tc.from)
		}
		require.Equal(t, aliceJID, c2.State().Peer.String())
		require.Zero(t, c2.Reattachments())
		exchange(t, c1, c2, 64<<10)

		// Alice goes and does not come back: bob's tunnel fails after
		// the bound, saying so.
		w.cut(a)
		_, err = c2.Read(make([]byte, 1))
		require.ErrorIs(t, err, transport.ErrNotReattached)
		require.ErrorIs(t, err, transport.ErrPeerGone)
		_, err = c1.Read(make([]byte, 1))
		require.ErrorIs(t, err, transport.ErrNotReattached)
		a.served <- nil
	})
}

// Both ends lose their sessions at once and come back with new resources:
// each one's re-attach to the other's old full JID meets
// service-unavailable, and they meet through presence (docs §8.2.5): the
// transfer completes exact over the one tunnel.
func TestReattachBothEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var st starts
		w := newWorld(t, xtlstest.AllContacts(), xtlstest.Trace(st.trace))
		a := w.join(aliceJID, tofu())
		b := w.join(bobJID, tofu())
		announce(t, a, 0)
		announce(t, b, 0)
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		const size = 4 << 20
		half := make(chan struct{})
		go func() {
			// Half now; the rest once both are back.
			_, err := c1.Write(make([]byte, size/2))
			require.NoError(t, err)
			<-half
			_, err = c1.Write(make([]byte, size/2))
			require.NoError(t, err)
			require.NoError(t, c1.Close())
		}()
		_, err = io.CopyN(io.Discard, c2, size/4)
		require.NoError(t, err)
		w.cut(a)
		w.cut(b)
		w.rejoin(a, "alice@example.net/back")
		w.rejoin(b, "bob@example.org/back")
		announce(t, a, 0)
		announce(t, b, 0)
		close(half)
		n, err := io.Copy(io.Discard, c2)
		require.NoError(t, err)
		require.Equal(t, int64(size-size/4), n)
		require.Equal(t, "alice@example.net/back", c2.State().Peer.String())
		require.Equal(t, "bob@example.org/back", c1.State().Peer.String())
		require.Equal(t, int32(1), st.n.Load(), "one tunnel, one TLS handshake")
		require.NoError(t, c2.Close())
	})
}

// A tunnel on a bytestream whose session ends leaves the bytestream; once
// re-attached it moves onto one again at once, not after the automatic
// move's back-off (30 s from the first move).
func TestReattachMovesAgain(t *testing.T) {
	w := newWorld(t, xtlstest.Proxy65("example.net"))
	a := w.join(aliceJID, tofu())
	b := w.join(bobJID, tofu())
	c1, c2, err := dialAccept(t, a, b)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, c2)
	}()
	buf := make([]byte, 64<<10)
	writeUntilMoved := func(moves int) {
		for sent := 0; c1.Path().Moves < moves || !c1.Path().Bytestream; sent += len(buf) {
			_, err := c1.Write(buf)
			require.NoError(t, err)
			require.Less(t, sent, 64<<20, "no move %d after 64 MiB", moves)
		}
	}
	writeUntilMoved(1)
	w.cut(a)
	w.rejoin(a, "alice@example.net/back")
	writeUntilMoved(2)
	require.Positive(t, c1.Reattachments())
	require.NoError(t, c1.CloseWrite())
	<-done
	c1.Close()
	c2.Close()
}

// A closed Handler takes no new session.
func TestReattachClosedHandler(t *testing.T) {
	w := newWorld(t)
	a := w.join(aliceJID, tofu())
	require.NoError(t, a.h.Close())
	s, err := w.n.Session(context.Background(), jid.MustParse("alice@example.net/other"))
	require.NoError(t, err)
	go s.Serve(mux.New(stanza.NSClient))
	require.ErrorIs(t, a.h.Reattach(s), xtls.ErrHandlerClosed)
}
