package xtls_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
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
// before the limits, one peer's handshakes cannot take another's slots, a
// failed handshake frees its slots at once, and a peer whose handshakes
// keep failing is backed off and reported once per burst.

const malloryJID = "mallory@evil.example/m"

// garbageHello is a TLS handshake record whose ClientHello is junk: the
// responder fails it at once, with a decode_error alert.
var garbageHello = []byte{0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 'j', 'u', 'n', 'k'}

// garbage opens a tunnel from e to peer, sends garbageHello and reads
// until the tunnel ends: it returns what it read and how it ended.
func garbage(e *transport.Endpoint, peer jid.JID) ([]byte, error) {
	c, err := e.Open(peer, "")
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(garbageHello); err != nil {
		c.Abort(stanza.UndefinedCondition, "test")
		return nil, err
	}
	return io.ReadAll(c)
}

// refusedFor reports whether the start of a tunnel from e to peer is
// answered resource-constraint (e must not try again: MaxTries 1).
func refusedFor(t testing.TB, e *transport.Endpoint, peer jid.JID) bool {
	t.Helper()
	c, err := e.Open(peer, "")
	require.NoError(t, err)
	defer c.Abort(stanza.UndefinedCondition, "test")
	err = c.Established(context.Background())
	return errors.Is(err, stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint})
}

// reports records what Config.AcceptFailed receives.
type reports struct {
	mu   sync.Mutex
	errs []error
}

func (r *reports) add(_ jid.JID, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

// split returns the failures reported one by one and the back-offs.
func (r *reports) split() (single []error, backoffs []*xtls.BackoffError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		var be *xtls.BackoffError
		if errors.As(err, &be) {
			backoffs = append(backoffs, be)
		} else {
			single = append(single, err)
		}
	}
	return single, backoffs
}

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

// A peer that stalls its handshakes or floods garbage ClientHellos takes
// only its own slots: another peer's Dial takes at most twice as long as
// on an idle Handler, and the flooding peer is backed off (reported once
// per burst). Fake time, 10 ms each way.
func TestHostilePeerDoesNotDelayOthers(t *testing.T) {
	stall := func(t *testing.T, w *world, bob jid.JID, res string) (wait func()) {
		_, e, _ := w.joinRaw("mallory@evil.example/" + res)
		for range 64 {
			_, err := e.Open(bob, "") // a start, and never a ClientHello
			require.NoError(t, err)
		}
		return func() {}
	}
	flood := func(t *testing.T, w *world, bob jid.JID, res string) (wait func()) {
		_, e, _ := w.joinRaw("mallory@evil.example/" + res)
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() { garbage(e, bob) })
		}
		return wg.Wait
	}
	for i, tc := range []struct {
		name    string
		attacks []func(t *testing.T, w *world, bob jid.JID, res string) func()
		// after is how long after the attack began its peer is backed
		// off: at once for a flood; for stalled starts once their
		// handshakes time out.
		after time.Duration
	}{
		0: {"64 stalled starts", []func(*testing.T, *world, jid.JID, string) func(){stall}, 31 * time.Second},
		1: {"garbage flood", []func(*testing.T, *world, jid.JID, string) func(){flood}, 0},
		2: {"both", []func(*testing.T, *world, jid.JID, string) func(){stall, flood}, 31 * time.Second},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t, xtlstest.Latency(10*time.Millisecond, 0))
				var rep reports
				cfg := tofu()
				cfg.AcceptFailed = rep.add
				b := w.join(bobJID, cfg)
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

				began := time.Now()
				var waits []func()
				for j, attack := range tc.attacks {
					waits = append(waits, attack(t, w, b.addr, strconv.Itoa(j)))
				}
				synctest.Wait()
				took := dial()
				t.Logf("%s: dial took %v under attack, %v idle", tc.name, took, idle)
				require.LessOrEqual(t, took, 2*idle, "%s: %v, idle %v", tc.name, took, idle)

				for _, wait := range waits {
					wait()
				}
				if d := tc.after - time.Since(began); d > 0 {
					time.Sleep(d)
				}
				_, probe, _ := w.joinRawWith("mallory@evil.example/probe", &transport.Config{MaxTries: 1})
				require.True(t, refusedFor(t, probe, b.addr), "mallory is backed off")
				single, backoffs := rep.split()
				require.Len(t, single, 2, "failures before the back-off are reported one by one")
				require.NotEmpty(t, backoffs)
				require.Equal(t, 3, backoffs[0].Failures)
				require.Equal(t, "mallory@evil.example", backoffs[0].Peer.String())
				require.Equal(t, 5*time.Second, backoffs[0].For)
				// Carol is not affected.
				dial()
			})
		})
	}
}

// A failed accepting handshake frees its slots at once: the dialer gets
// the TLS alert, then an abort (policy-violation), not a graceful close
// that lingers; a new tunnel takes the slot without waiting. Bob has one
// tunnel slot and one handshake slot; carol does not try again.
func TestFailedHandshakeFreesSlot(t *testing.T) {
	for i, tc := range []struct {
		name string
		fail func(t *testing.T, e *transport.Endpoint, bob jid.JID) (got []byte, err error)
	}{
		0: {"garbage", func(t *testing.T, e *transport.Endpoint, bob jid.JID) ([]byte, error) {
			return garbage(e, bob)
		}},
		1: {"timed out", func(t *testing.T, e *transport.Endpoint, bob jid.JID) ([]byte, error) {
			c, err := e.Open(bob, "")
			require.NoError(t, err)
			began := time.Now()
			got, err := io.ReadAll(c)
			require.Equal(t, 10*time.Second, time.Since(began), "HandshakeTimeout")
			return got, err
		}},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				var rep reports
				cfg := tofu()
				cfg.AcceptFailed = rep.add
				cfg.HandshakeTimeout = 10 * time.Second
				cfg.MaxPending = 1
				cfg.Transport = &transport.Config{MaxTunnels: 1}
				b := w.join(bobJID, cfg)
				listen(t, b)
				_, e, _ := w.joinRaw(malloryJID)

				got, err := tc.fail(t, e, b.addr)
				var ae *transport.AbortError
				require.ErrorAs(t, err, &ae, tc.name)
				require.Equal(t, stanza.PolicyViolation, ae.Condition)
				require.True(t, ae.Remote)
				if tc.name == "garbage" {
					require.NotEmpty(t, got)
					require.Equal(t, byte(0x15), got[0], "a TLS alert record first")
				}
				synctest.Wait()
				single, _ := rep.split()
				require.Len(t, single, 1)

				cc := tofu()
				cc.Transport = &transport.Config{MaxTries: 1}
				c := w.join("carol@example.com/c", cc)
				conn, err := c.h.Dial(context.Background(), b.addr)
				require.NoError(t, err)
				conn.Close()
			})
		})
	}
}

// AcceptFailed hears of the failures below the threshold one by one, then
// of the burst once, with its count; starts during the back-off cost no
// handshake and no report; after it a single failure starts the next,
// twice as long; a successful handshake forgets it all.
func TestBackoffReportsOncePerBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		var rep reports
		cfg := tofu()
		cfg.AcceptFailed = rep.add
		b := w.join(bobJID, cfg)
		listen(t, b)
		_, e, _ := w.joinRawWith(malloryJID, &transport.Config{MaxTries: 1})
		attempt := func() error {
			_, err := garbage(e, b.addr)
			synctest.Wait() // the report is made
			return err
		}
		for range 3 {
			var ae *transport.AbortError
			require.ErrorAs(t, attempt(), &ae)
		}
		for range 20 {
			require.ErrorIs(t, attempt(), stanza.Error{Condition: stanza.ResourceConstraint})
		}
		single, backoffs := rep.split()
		require.Len(t, single, 2)
		require.Len(t, backoffs, 1)
		require.Equal(t, 3, backoffs[0].Failures)
		require.Equal(t, 5*time.Second, backoffs[0].For)
		require.Error(t, backoffs[0].Last)
		require.Contains(t, backoffs[0].Error(), "3 failed handshakes from mallory@evil.example")

		time.Sleep(5 * time.Second)
		var ae *transport.AbortError
		require.ErrorAs(t, attempt(), &ae)
		require.ErrorIs(t, attempt(), stanza.Error{Condition: stanza.ResourceConstraint})
		single, backoffs = rep.split()
		require.Len(t, single, 2)
		require.Len(t, backoffs, 2)
		require.Equal(t, 1, backoffs[1].Failures)
		require.Equal(t, 10*time.Second, backoffs[1].For)

		// Once the back-off is over, a good handshake from another
		// resource of the same peer forgets the failures.
		time.Sleep(10 * time.Second)
		good := w.join("mallory@evil.example/good", tofu())
		conn, err := good.h.Dial(context.Background(), b.addr)
		require.NoError(t, err)
		conn.Close()
		require.ErrorAs(t, attempt(), &ae)
		single, _ = rep.split()
		require.Len(t, single, 3, "counted afresh")
	})
}

// The TLS alert of a failed accepting handshake reaches the dialer before
// the abort, even when the network loses it once: the dialer learns that
// its certificate was refused (bad_certificate), not just that the tunnel
// was aborted.
func TestFailedHandshakeAlertArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bob := jid.MustParse(bobJID)
		var data atomic.Int32
		lose := func(s xtlstest.Stanza) bool {
			// Bob's second data IQ to alice carries the alert.
			return s.Sender.Equal(bob) && s.Type == "set" && bytes.Contains(s.Raw, []byte("<data")) && data.Add(1) == 2
		}
		w := newWorld(t, xtlstest.Drop(1), xtlstest.FaultFilter(lose))
		a := w.join(aliceJID, tofu())
		b := w.join(bobJID, xtls.Config{Pins: xtls.NewMemPinStore()}) // trusts nobody
		listen(t, b)
		_, err := a.h.Dial(context.Background(), b.addr)
		var nt *xtls.NotTrustedByPeerError
		require.ErrorAs(t, err, &nt)
		require.Contains(t, nt.Reason, "bad certificate")
		require.GreaterOrEqual(t, data.Load(), int32(3), "the alert was sent again")
	})
}
