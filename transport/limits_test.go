package transport

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// liveHeap returns the bytes of live heap, after a collection.
func liveHeap() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// A peer that sends one-byte blocks, 255 of them ahead of a gap and then
// the gap, over and over until its 1 MiB of credit is used, makes the
// receiver hold no more than about what it sent: every block does not get
// a buffer of its own (it did: ~535 bytes of heap per byte of credit).
func TestAmplificationBounded(t *testing.T) {
	const window = 1 << 20
	m := newMT(&Config{BlockSize: 4096, Window: window, MaxWindow: window}, false)
	m.t.accept(xstanza.Start{SID: sid, BlockSize: 4096, Window: 65536})
	before := liveHeap()
	one := []byte{'x'}
	for base := 0; base+256 <= window; base += 256 {
		for k := 1; k < 256; k++ {
			r, why := m.t.onData(uint16(base+k), one, nil)
			require.Equal(t, replyAck, r, why)
		}
		r, why := m.t.onData(uint16(base), one, nil)
		require.Equal(t, replyAck, r, why)
	}
	require.Equal(t, window, m.t.rbuf.len())
	grown := liveHeap() - before
	t.Logf("heap grew by %d KiB for %d KiB buffered", grown>>10, window>>10)
	require.LessOrEqual(t, grown, int64(2<<20+2*window))
	runtime.KeepAlive(m)
}

// One peer (a bare JID, all its resources together) may hold only its share
// of tunnels and of window memory; beyond it its starts are answered
// resource-constraint (wait), while another peer is still let in. An
// application's policy refusal comes first: not-acceptable, even at a limit.
func TestPeerLimits(t *testing.T) {
	start := func(id string) string {
		return encodeElem(xstanza.Start{SID: id, BlockSize: 4096, Window: 16384})
	}
	const mallory = "mallory@evil.example/"
	for i, tc := range []struct {
		name  string
		cfg   Config
		admit int // mallory's starts that get proceed
		limit string
	}{
		0: {"tunnels per peer", Config{Window: 65536, MaxTunnelsPerPeer: 3}, 3, "MaxTunnelsPerPeer"},
		1: {"memory per peer", Config{Window: 65536, PeerMemoryBudget: 2 * 65536}, 2, "PeerMemoryBudget"},
		2: {"memory in all", Config{Window: 65536, MemoryBudget: 4 * 65536}, 3, "MemoryBudget"},
	} {
		t.Run(fmt.Sprintf("%d_%s", i, tc.name), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f, e := newFakeEndpoint(&tc.cfg)
				t.Cleanup(func() { e.Close() })
				e.SetAcceptFunc(func(*Conn) error { return nil })
				if tc.limit == "MemoryBudget" {
					// bob takes one window first; mallory gets the rest.
					require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, start("b0")), "<proceed")
				}
				for n := range 10 {
					// Alternate resources: they share the bare JID's limits.
					resp := deliver(t, e, stanza.SetIQ, fmt.Sprintf("%s%d", mallory, n%2), start(fmt.Sprintf("m%d", n)))
					if n < tc.admit {
						require.Contains(t, resp, "<proceed", "start %d", n)
						continue
					}
					require.Equal(t, "resource-constraint", errCond(resp), "start %d: %s", n, resp)
					require.Contains(t, resp, `type="wait"`)
					require.Contains(t, resp, tc.limit)
				}
				if tc.limit != "MemoryBudget" {
					require.Contains(t, deliver(t, e, stanza.SetIQ, bobJID, start("b1")), "<proceed", "another peer still gets in")
				}
				// Policy before limits: mallory refused by the application
				// learns not-acceptable (final), not "try again".
				e.SetPeerPolicy(func(p jid.JID) error {
					if p.Bare().String() == "mallory@evil.example" {
						return errors.New("not welcome")
					}
					return nil
				})
				resp := deliver(t, e, stanza.SetIQ, mallory+"0", start("m99"))
				require.Equal(t, "not-acceptable", errCond(resp), resp)
				f.none(t)
			})
		})
	}
}

// Our own Open counts against the same limits, and says which.
func TestOpenLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e := newFakeEndpoint(&Config{Window: 65536, PeerMemoryBudget: 65536})
		t.Cleanup(func() { e.Close() })
		_, err := e.Open(jid.MustParse(bobJID), "o1")
		require.NoError(t, err)
		_, err = e.Open(jid.MustParse("bob@example.net/other"), "o2")
		require.ErrorIs(t, err, ErrLimit)
		var le *LimitError
		require.ErrorAs(t, err, &le)
		require.Equal(t, "PeerMemoryBudget", le.Limit)
		_, err = e.Open(jid.MustParse("carol@example.net/c"), "o3")
		require.NoError(t, err)
	})
}

// Auto-tuning grows a window only with bytes the budgets grant.
func TestWindowGrowthBudgeted(t *testing.T) {
	for _, grant := range []bool{true, false} {
		m := newMT(&Config{BlockSize: 4096, Window: 8192, MaxWindow: 1 << 20}, false)
		asked := 0
		m.env.grant = func(bare string, more int) bool {
			require.Equal(t, "bob@example.net", bare)
			asked += more
			return grant
		}
		m.t.accept(xstanza.Start{SID: sid, BlockSize: 4096, Window: 65536})
		m.t.release()
		m.t.rtt.sample(100 * time.Millisecond)
		buf := make([]byte, 8192)
		for i := range 8 {
			m.t.onData(uint16(i), make([]byte, 4096), nil)
			m.t.read(buf)
			for f := m.next(); f != nil; f = m.next() {
			}
			m.now = m.now.Add(time.Millisecond)
		}
		require.NotZero(t, asked)
		if grant {
			require.Greater(t, m.t.window(), 8192)
		} else {
			require.Equal(t, 8192, m.t.window())
		}
	}
}

// Flush returns once everything written is acknowledged, or with the
// tunnel's failure, or when its context ends.
func TestFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, _, c, start := initiator(t, nil)
		proceed(start, 4096, 65536)
		_, err := c.Write([]byte("alert"))
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- c.Flush(context.Background()) }()
		s := f.next(t)
		synctest.Wait()
		require.Empty(t, done)
		s.ack()
		require.NoError(t, <-done)

		_, err = c.Write([]byte("more"))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		require.ErrorIs(t, c.Flush(ctx), context.DeadlineExceeded)
		f.next(t).fail(stanza.Cancel, stanza.ItemNotFound)
		require.ErrorIs(t, c.Flush(context.Background()), stanza.Error{Condition: stanza.ItemNotFound})
	})
}

// A new tunnel gets what the budget has left when that is less than
// Config.Window, down to a minimum; below it the start is refused.
func TestWindowFromWhatIsLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, e := newFakeEndpoint(&Config{Window: 256 << 10, PeerMemoryBudget: 256<<10 + 64<<10 + 100})
		t.Cleanup(func() { e.Close() })
		e.SetAcceptFunc(func(*Conn) error { return nil })
		for i, want := range []string{`window="262144"`, `window="65636"`, "resource-constraint"} {
			resp := deliver(t, e, stanza.SetIQ, bobJID, encodeElem(xstanza.Start{SID: fmt.Sprintf("w%d", i), BlockSize: 4096, Window: 16384}))
			require.Contains(t, resp, want, resp)
		}
	})
}
