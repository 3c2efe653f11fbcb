package transport_test

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

var (
	alice = jid.MustParse("alice@example.net/a")
	bob   = jid.MustParse("bob@example.net/b")
)

// peer is one XMPP client on a test network with a transport Endpoint.
type peer struct {
	s        *xmpp.Session
	e        *transport.Endpoint
	accepted chan *transport.Conn
	served   chan error
}

// world is two (or more) peers on an xtlstest network.
type world struct {
	n     *xtlstest.Network
	peers map[string]*peer
}

func newWorld(t testing.TB, cfg *transport.Config, opts ...xtlstest.Option) *world {
	t.Helper()
	w := &world{n: xtlstest.NewNetwork(opts...), peers: map[string]*peer{}}
	t.Cleanup(func() {
		for _, p := range w.peers {
			p.e.Close()
		}
		w.n.Close()
		for _, p := range w.peers {
			<-p.served
		}
	})
	return w
}

func (w *world) join(t testing.TB, addr jid.JID, cfg *transport.Config) *peer {
	t.Helper()
	s, err := w.n.Session(context.Background(), addr)
	require.NoError(t, err)
	p := &peer{s: s, e: transport.NewEndpoint(s, cfg), accepted: make(chan *transport.Conn, 1024), served: make(chan error, 1)}
	p.e.SetAcceptFunc(func(c *transport.Conn) error {
		select {
		case p.accepted <- c:
			return nil
		default:
			return stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint}
		}
	})
	go func() {
		err := s.Serve(mux.New(stanza.NSClient, p.e.Handle()))
		p.e.SessionEnded(err)
		p.served <- err
	}()
	w.peers[addr.String()] = p
	return p
}

// pipe returns a tunnel from a to b, both ends.
func pipe(t testing.TB, a, b *peer) (*transport.Conn, *transport.Conn) {
	t.Helper()
	c1, err := a.e.Dial(context.Background(), b.s.LocalAddr(), "")
	require.NoError(t, err)
	c2 := <-b.accepted
	return c1, c2
}

// exchange sends n random bytes each way at once and checks SHA-256 on
// arrival.
func exchange(t testing.TB, c1, c2 net.Conn, n int64) {
	t.Helper()
	var wg sync.WaitGroup
	check := func(from, to net.Conn, seed uint64) {
		defer wg.Done()
		src := io.LimitReader(rand.NewChaCha8([32]byte{byte(seed)}), n)
		want := sha256.New()
		errc := make(chan error, 1)
		go func() {
			_, err := io.Copy(from, io.TeeReader(src, want))
			if err == nil {
				err = from.(interface{ CloseWrite() error }).CloseWrite()
			}
			errc <- err
		}()
		got := sha256.New()
		m, err := io.Copy(got, to)
		require.NoError(t, err)
		require.NoError(t, <-errc)
		require.Equal(t, n, m)
		require.Equal(t, want.Sum(nil), got.Sum(nil))
	}
	wg.Add(2)
	go check(c1, c2, 1)
	go check(c2, c1, 2)
	wg.Wait()
}

func TestEndToEnd(t *testing.T) {
	w := newWorld(t, nil)
	a := w.join(t, alice, nil)
	b := w.join(t, bob, nil)
	c1, c2 := pipe(t, a, b)
	exchange(t, c1, c2, 3<<20)
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())
}

// 64 MiB each way under 2% duplicates, 2% reordering and 1% drops: the
// bytes arrive identical, nothing hangs, nothing is left running.
func TestEndToEndFaults(t *testing.T) {
	size := int64(64 << 20)
	if testing.Short() {
		size = 4 << 20
	}
	w := newWorld(t, nil, xtlstest.Seed(7), xtlstest.Duplicate(0.02), xtlstest.Reorder(0.02), xtlstest.Drop(0.01))
	cfg := &transport.Config{ChunkSize: 32768, Window: 4 << 20, MinAckTimeout: 500 * time.Millisecond}
	a := w.join(t, alice, cfg)
	b := w.join(t, bob, cfg)
	c1, c2 := pipe(t, a, b)
	exchange(t, c1, c2, size)
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())
	st := w.n.Stats()
	require.NotZero(t, st.Duplicated)
	require.NotZero(t, st.Reordered)
	require.NotZero(t, st.Dropped)
}

// Many tunnels over one pair of sessions move data at once, each bounded
// by its own window and independent of the others.
func TestManyTunnels(t *testing.T) {
	w := newWorld(t, nil)
	cfg := &transport.Config{Window: 65536}
	a := w.join(t, alice, cfg)
	b := w.join(t, bob, cfg)
	const tunnels = 50
	dialed := make(chan *transport.Conn, tunnels)
	for range tunnels {
		go func() {
			c, err := a.e.Dial(context.Background(), bob, "")
			require.NoError(t, err)
			dialed <- c
		}()
	}
	byID := map[string]*transport.Conn{}
	for range tunnels {
		c := <-b.accepted
		byID[c.SID()] = c
	}
	var wg sync.WaitGroup
	for range tunnels {
		c1 := <-dialed
		c2 := byID[c1.SID()]
		require.NotNil(t, c2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			exchange(t, c1, c2, 256<<10)
			require.NoError(t, c1.Close())
			require.NoError(t, c2.Close())
		}()
	}
	wg.Wait()
}

// Two starts with the same sid cross: the entity whose full JID sorts first
// wins, the other takes the winner's tunnel as the one it asked for. Both
// Dials return ends of the same single tunnel, on either side of the order.
func TestCrossedStarts(t *testing.T) {
	for _, lat := range []time.Duration{5 * time.Millisecond, 20 * time.Millisecond} {
		w := newWorld(t, nil, xtlstest.Latency(lat, 0))
		a := w.join(t, alice, nil)
		b := w.join(t, bob, nil)
		for i := range 20 {
			sid := "chat" + string(rune('a'+i))
			r1, r2 := make(chan *transport.Conn), make(chan *transport.Conn)
			go func() {
				c, err := a.e.Dial(context.Background(), bob, sid)
				require.NoError(t, err)
				r1 <- c
			}()
			go func() {
				c, err := b.e.Dial(context.Background(), alice, sid)
				require.NoError(t, err)
				r2 <- c
			}()
			c1, c2 := <-r1, <-r2
			require.Equal(t, sid, c1.SID())
			require.Equal(t, sid, c2.SID())
			require.NotEqual(t, c1.Initiator(), c2.Initiator(), "one tunnel: one initiator")
			require.True(t, c1.Initiator(), "alice sorts first and wins the crossing")
			exchange(t, c1, c2, 64<<10)
			require.NoError(t, c1.Close())
			require.NoError(t, c2.Close())
			require.Empty(t, a.accepted)
			require.Empty(t, b.accepted)
		}
	}
}

// When the session's server goes away, the tunnel's Read and Write fail with
// an error naming the session's end, promptly.
func TestSessionGone(t *testing.T) {
	w := newWorld(t, nil)
	a := w.join(t, alice, nil)
	b := w.join(t, bob, nil)
	c1, c2 := pipe(t, a, b)
	_, err := c1.Write([]byte("hello"))
	require.NoError(t, err)
	require.NoError(t, w.n.Disconnect(bob, stream.SystemShutdown))
	_, err = io.ReadAll(c2)
	require.ErrorIs(t, err, transport.ErrSessionClosed)
	// Alice's side: her IQs to bob now get service-unavailable from the
	// server on bob's behalf, which breaks the tunnel.
	var werr error
	for werr == nil {
		_, werr = c1.Write(make([]byte, 4096))
	}
	require.ErrorIs(t, werr, stanza.Error{Condition: stanza.ServiceUnavailable})
}
