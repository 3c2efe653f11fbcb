package transport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// cut ends p's session from the network's side and waits until its
// Endpoint has heard (SessionEnded returned).
func (w *world) cut(t testing.TB, p *peer) {
	t.Helper()
	require.NoError(t, w.n.Disconnect(p.s.LocalAddr(), stream.SystemShutdown))
	<-p.served
}

// rejoin connects p again as addr (a new resource) and gives its Endpoint
// the new session.
func (w *world) rejoin(t testing.TB, p *peer, addr jid.JID) {
	t.Helper()
	s, err := w.n.Session(context.Background(), addr)
	require.NoError(t, err)
	p.s = s
	go func() {
		err := s.Serve(mux.New(stanza.NSClient, p.e.Handle()))
		p.e.SessionEnded(err)
		p.served <- err
	}()
	require.NoError(t, p.e.Reattach(s))
}

// progress is a writer that counts what passed through it.
type progress struct{ n atomic.Int64 }

func (p *progress) Write(b []byte) (int, error) { p.n.Add(int64(len(b))); return len(b), nil }

// A transfer during which the sender's session is cut three times and the
// receiver's once, each replaced by a session with a new resource, arrives
// exact, on the same tunnel, with the faults of TestEndToEndFaults or
// without.
func TestReattachDuringTransfer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []xtlstest.Option
	}{
		{"clean", nil},
		{"faults", []xtlstest.Option{xtlstest.Seed(3), xtlstest.Duplicate(0.02), xtlstest.Reorder(0.02), xtlstest.Drop(0.01)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &transport.Config{Reattach: time.Minute, AckTimeout: 300 * time.Millisecond, MinAckTimeout: 200 * time.Millisecond}
			w, a, b, c1, c2 := reattachPipe(t, cfg, tc.opts...)

			const n = 8 << 20
			src := io.LimitReader(rand.NewChaCha8([32]byte{9}), n)
			want := sha256.New()
			werr := make(chan error, 1)
			go func() {
				_, err := io.Copy(c1, io.TeeReader(src, want))
				if err == nil {
					err = c1.Close()
				}
				werr <- err
			}()
			var got progress
			h := sha256.New()
			rerr := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.MultiWriter(h, &got), c2)
				rerr <- err
			}()
			waitFor := func(k int64) {
				for got.n.Load() < k {
					select {
					case err := <-rerr:
						t.Fatalf("reader ended early: %v", err)
					case <-time.After(time.Millisecond):
					}
				}
			}
			for i, who := range []*peer{a, a, b, a} {
				waitFor(int64(i+1) * n / 5)
				w.cut(t, who)
				require.True(t, who.e.Detached())
				addr := jid.MustParse(fmt.Sprintf("%s/r%d", who.s.LocalAddr().Bare(), i))
				w.rejoin(t, who, addr)
			}
			require.NoError(t, <-rerr)
			require.NoError(t, <-werr)
			require.Equal(t, want.Sum(nil), h.Sum(nil))
			require.Equal(t, int64(n), got.n.Load())
			require.Equal(t, "alice@example.net/r3", c2.RemoteAddr().String())
			require.Equal(t, "bob@example.net/r2", c1.RemoteAddr().String())
			require.GreaterOrEqual(t, c1.Reattachments(), 4)
			require.NoError(t, c2.Close())
		})
	}
}

// A tunnel whose session ends and is never replaced fails after
// Config.Reattach with a *DetachedError, at both ends; the Endpoint then
// shuts down (its goroutines end), and Reattach fails.
func TestReattachBound(t *testing.T) {
	cfg := &transport.Config{Reattach: 300 * time.Millisecond, KeepAlive: 100 * time.Millisecond, KeepAliveTimeout: 100 * time.Millisecond}
	w, a, _, c1, c2 := reattachPipe(t, cfg)
	w.cut(t, a)
	_, err := c1.Read(make([]byte, 1))
	require.ErrorIs(t, err, transport.ErrNotReattached)
	require.ErrorIs(t, err, transport.ErrSessionClosed)
	_, err = c2.Read(make([]byte, 1))
	require.ErrorIs(t, err, transport.ErrNotReattached)
	require.ErrorIs(t, err, transport.ErrPeerGone)
	s, err := w.n.Session(context.Background(), jid.MustParse("alice@example.net/late"))
	require.NoError(t, err)
	defer s.Close()
	require.ErrorIs(t, a.e.Reattach(s), transport.ErrSessionClosed)
	a.served <- nil // the cleanup waits for one per peer
}

// reattachPipe returns a world with alice and bob and a tunnel between
// them that both ends allow to be re-attached.
func reattachPipe(t *testing.T, cfg *transport.Config, opts ...xtlstest.Option) (w *world, a, b *peer, c1, c2 *transport.Conn) {
	t.Helper()
	w = newWorld(t, cfg, opts...)
	a = w.join(t, alice, cfg)
	b = w.join(t, bob, cfg)
	c1, c2 = pipe(t, a, b)
	key := bytes.Repeat([]byte{1}, 32)
	c1.AllowReattach(key)
	c2.AllowReattach(key)
	return w, a, b, c1, c2
}

// A tunnel on a bytestream whose sender's session ends leaves the
// bytestream (BYE) and waits; after the re-attach it goes on over IQs, and
// a new bytestream can carry it again. The bytes arrive exact.
func TestReattachLeavesBytestream(t *testing.T) {
	w, a, _, c1, c2 := reattachPipe(t, &transport.Config{Reattach: time.Minute, Window: 1 << 20})
	const n = 8 << 20
	flow(t, c1, c2, n, 1, []int64{1 << 20, 3 << 20, 5 << 20}, func(i int) {
		switch i {
		case 0:
			attach(t, c1, c2)
		case 1:
			w.cut(t, a)
			require.False(t, c1.Paths().Bytestream, "a suspended tunnel leaves its bytestream")
			w.rejoin(t, a, jid.MustParse("alice@example.net/back"))
		case 2:
			attach(t, c1, c2)
		}
	})
	st := c1.Paths()
	require.Equal(t, 2, st.Moves)
	require.Positive(t, c1.Reattachments())
	require.Equal(t, "alice@example.net/back", c2.RemoteAddr().String())
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())
}

// The receiver's session is cut mid-transfer and it comes back with the
// same full JID, as a server may bind it: the sender cannot tell by the
// JID that what it had in flight went to the old session, and must send
// it again all the same (and count it afresh in the session's bound).
func TestReattachSameJID(t *testing.T) {
	// A small session window: bytes still counted from the first attempts
	// would soon leave no room for new ones.
	w, _, b, c1, c2 := reattachPipe(t, &transport.Config{Reattach: time.Minute, SessionWindow: 64 << 10})
	flow(t, c1, c2, 4<<20, 1, []int64{1 << 20, 2 << 20, 3 << 20}, func(int) {
		w.cut(t, b)
		w.rejoin(t, b, bob)
	})
	require.Positive(t, c2.Reattachments())
	require.Equal(t, bob.String(), c1.RemoteAddr().String())
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())
}
