package transport_test

import (
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/internal/bsframe"
	"github.com/xmppxtls/xtls/transport"
)

// The bytestream's local policy, as docs/protocol.md §8.1.4 states it for
// this implementation.
const (
	stallTimeout = 10 * time.Second     // a bytestream that brings nothing while requests wait
	kickDelay    = 5 * time.Millisecond // idle after a write, before a NOP
)

// gate holds both directions of a bytestream: a held Write waits until the
// gate opens again or its own end is closed, as a proxy that stops relaying
// would make it (the bytes are not lost, only late).
type gate struct {
	mu   sync.Mutex
	open chan struct{} // closed while the gate is open
}

func newGate() *gate {
	g := &gate{open: make(chan struct{})}
	close(g.open)
	return g
}

func (g *gate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = make(chan struct{})
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
}

// gatedConn is one end of an in-memory bytestream whose writes pass g.
type gatedConn struct {
	net.Conn
	g      *gate
	once   sync.Once
	closed chan struct{}
}

func (c *gatedConn) Write(p []byte) (int, error) {
	c.g.mu.Lock()
	open := c.g.open
	c.g.mu.Unlock()
	select {
	case <-open:
	case <-c.closed:
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *gatedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// gatedPair returns the two ends of an in-memory bytestream (net.Pipe, so
// that it works in a synctest bubble) and the gate both directions pass.
func gatedPair(t testing.TB) (net.Conn, net.Conn, *gate) {
	g := newGate()
	p1, p2 := net.Pipe()
	c1 := &gatedConn{Conn: p1, g: g, closed: make(chan struct{})}
	c2 := &gatedConn{Conn: p2, g: g, closed: make(chan struct{})}
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2, g
}

// A bytestream that relays nothing while requests wait on it counts as
// broken after the stall timeout (10 s), not before: what it left
// unanswered goes again on IQs and the transfer completes exact. A
// bytestream that is only slow (9 s without a byte) is kept.
func TestBytestreamStall(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hold      time.Duration // 0: until the bytestream is given up
		fallbacks int
	}{
		{"slow", stallTimeout - time.Second, 0},
		{"stalled", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t, nil)
				cfg := &transport.Config{Window: 1 << 20}
				a := w.join(t, alice, cfg)
				b := w.join(t, bob, cfg)
				c1, c2 := pipe(t, a, b)
				// A bytestream kept without an answer forever would
				// hold the transfer (in fake time) forever.
				require.NoError(t, c1.SetDeadline(time.Now().Add(time.Minute)))
				require.NoError(t, c2.SetDeadline(time.Now().Add(time.Minute)))
				var (
					g       *gate
					stalled time.Time
				)
				flow(t, c1, c2, 6<<20, 1, []int64{256 << 10, 2 << 20}, func(i int) {
					switch i {
					case 0:
						var s1, s2 net.Conn
						s1, s2, g = gatedPair(t)
						require.NoError(t, c1.UseBytestream(s1))
						require.NoError(t, c2.UseBytestream(s2))
					case 1:
						require.True(t, c1.Paths().Bytestream, "the bulk is on the bytestream when it stalls")
						g.hold()
						stalled = time.Now()
						if tc.hold > 0 {
							time.AfterFunc(tc.hold, g.release)
						}
					}
				})
				took := time.Since(stalled)
				st1, st2 := c1.Paths(), c2.Paths()
				t.Logf("done %v after the stall; alice %+v, bob %+v", took, st1, st2)
				require.Equal(t, tc.fallbacks, st1.Fallbacks)
				require.Equal(t, tc.fallbacks, st2.Fallbacks)
				require.Equal(t, tc.fallbacks == 0, st1.Bytestream)
				if tc.fallbacks > 0 {
					// Nothing more could arrive before the stall was
					// noticed, and the IQs took over at once.
					require.GreaterOrEqual(t, took, stallTimeout)
					require.Less(t, took, stallTimeout+time.Second)
				}
				require.NoError(t, c1.Close())
				require.NoError(t, c2.Close())
			})
		})
	}
}

// readFrames reads frames from conn until it ends, and sends each on the
// returned channel.
func readFrames(conn net.Conn) <-chan bsframe.Frame {
	out := make(chan bsframe.Frame, 64)
	go func() {
		defer close(out)
		r := bsframe.NewReader(conn)
		for {
			fr, err := r.Next()
			if err != nil {
				return
			}
			fr.Payload = append([]byte(nil), fr.Payload...)
			out <- fr
		}
	}()
	return out
}

// After each write, once idle for 5 ms, the bytestream's writer sends one
// NOP (a proxy such as Prosody 0.12's proxy65 holds the tail of a burst
// until more bytes come, and the peer may be waiting for it): after a
// request that waits for its answer, and after an answer the peer waits
// for. A bytestream that has written nothing since its last NOP stays
// silent, and so does one that was never written to.
func TestBytestreamNopKick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, nil)
		a := w.join(t, alice, nil)
		b := w.join(t, bob, nil)
		c1, _ := pipe(t, a, b)
		s1, raw := net.Pipe()
		t.Cleanup(func() { s1.Close(); raw.Close() })
		require.NoError(t, c1.UseBytestream(s1))
		frames := readFrames(raw)
		silent := func(d time.Duration, why string) {
			t.Helper()
			select {
			case fr := <-frames:
				t.Fatalf("%s: a %v frame", why, fr.Type)
			case <-time.After(d):
			}
		}
		next := func() (bsframe.Frame, time.Time) {
			t.Helper()
			select {
			case fr, ok := <-frames:
				require.True(t, ok, "the bytestream ended")
				return fr, time.Now()
			case <-time.After(time.Minute):
				t.Fatal("no frame")
			}
			panic("unreachable")
		}
		wantNop := func(after time.Time, why string) {
			t.Helper()
			fr, at := next()
			require.Equal(t, bsframe.Nop, fr.Type, why)
			require.Equal(t, kickDelay, at.Sub(after), why)
		}

		silent(time.Second, "nothing was ever written")

		// A request that waits for its answer: one NOP, then silence
		// while the answer does not come (until the request is sent
		// again: the acknowledgement timeout is seconds).
		_, err := c1.Write([]byte("hello"))
		require.NoError(t, err)
		data, at := next()
		require.Equal(t, bsframe.Data, data.Type)
		require.Equal(t, "hello", string(data.Payload))
		wantNop(at, "a request waits for its answer")
		silent(time.Second, "one NOP per write")

		// Answered: the tunnel is idle, and the bytestream silent.
		res, err := bsframe.AppendFrame(nil, bsframe.Frame{Type: bsframe.Result, ID: data.ID})
		require.NoError(t, err)
		_, err = raw.Write(res)
		require.NoError(t, err)
		silent(10*time.Second, "idle")

		// An answer the peer waits for is kicked too.
		req, err := bsframe.AppendFrame(nil, bsframe.Frame{Type: bsframe.Data, ID: 7, Seq: 0, Payload: []byte("hi")})
		require.NoError(t, err)
		_, err = raw.Write(req)
		require.NoError(t, err)
		ans, at := next()
		require.Equal(t, bsframe.Result, ans.Type)
		require.Equal(t, uint32(7), ans.ID)
		wantNop(at, "an answer the peer waits for")
		silent(10*time.Second, "idle again")
		require.NoError(t, c1.Close())
	})
}
