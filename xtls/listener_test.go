package xtls_test

import (
	"context"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// Hostile peers on the accept path (issue 16): the peer policy comes
// before the limits, and one peer's handshakes cannot take another's
// slots.

// The peer policy (no Listener, a closed one, Config.AcceptPeer) answers
// not-acceptable, final, even when a limit is reached: S6 before S7.
func TestPolicyBeforeLimits(t *testing.T) {
	for i, tc := range []struct {
		name  string
		setup func(b *node)
	}{
		0: {"no listener", func(*node) {}},
		1: {"listener closed", func(b *node) { b.h.Listen().Close() }},
		2: {"AcceptPeer refuses", func(b *node) { b.h.Listen() }},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				cfg := tofu()
				cfg.Transport = &transport.Config{MaxTunnels: 1}
				cfg.AcceptPeer = func(p jid.JID) bool { return p.Bare().String() != "alice@example.net" }
				b := w.join(bobJID, cfg)
				c := w.join("carol@example.com/c", tofu())
				listen(t, c)
				// Bob's one tunnel slot is taken by his own tunnel to carol.
				bc, err := b.h.Dial(context.Background(), c.addr)
				require.NoError(t, err)
				defer bc.Close()
				tc.setup(b)

				a := w.join(aliceJID, tofu())
				began := time.Now()
				_, err = a.h.Dial(context.Background(), b.addr)
				require.ErrorIs(t, err, xtls.ErrRefused, tc.name)
				require.ErrorIs(t, err, stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable})
				require.Zero(t, time.Since(began), "refused at once, not after tries")
			})
		})
	}
}

// A peer that stalls its handshakes takes only its own slots: another
// peer's Dial takes at most twice as long as on an idle Handler. Fake
// time, 10 ms each way.
func TestHostilePeerDoesNotDelayOthers(t *testing.T) {
	stall := func(t *testing.T, w *world, bob jid.JID, res string) (wait func()) {
		_, e, _ := w.joinRaw("mallory@evil.example/" + res)
		for range 64 {
			_, err := e.Open(bob, "") // a start, and never a ClientHello
			require.NoError(t, err)
		}
		return func() {}
	}
	for i, tc := range []struct {
		name    string
		attacks []func(t *testing.T, w *world, bob jid.JID, res string) func()
	}{
		0: {"64 stalled starts", []func(*testing.T, *world, jid.JID, string) func(){stall}},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t, xtlstest.Latency(10*time.Millisecond, 0))
				b := w.join(bobJID, tofu())
				listen(t, b)
				c := w.join("carol@example.com/c", tofu())
				dial := func() time.Duration {
					began := time.Now()
					conn, err := c.h.Dial(context.Background(), b.addr)
					require.NoError(t, err)
					took := time.Since(began)
					conn.Close()
					return took
				}
				dial() // the first pins bob and asks the server what it runs
				idle := dial()
				require.NotZero(t, idle)

				for j, attack := range tc.attacks {
					attack(t, w, b.addr, strconv.Itoa(j))
				}
				synctest.Wait()
				took := dial()
				t.Logf("%s: dial took %v under attack, %v idle", tc.name, took, idle)
				require.LessOrEqual(t, took, 2*idle, "%s: %v, idle %v", tc.name, took, idle)

				// Carol is not affected.
				dial()
			})
		})
	}
}
