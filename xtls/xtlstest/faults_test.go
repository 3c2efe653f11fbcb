package xtlstest_test

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

var bounceTests = [...]struct {
	opt     xtlstest.Option
	want    stanza.Error
	counter func(xtlstest.Stats) int64
}{
	0: {
		opt:     xtlstest.Drop(1),
		want:    stanza.Error{Type: stanza.Wait, Condition: stanza.RemoteServerTimeout},
		counter: func(s xtlstest.Stats) int64 { return s.Dropped },
	},
	1: {
		opt:     xtlstest.WaitErrors(1),
		want:    stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint},
		counter: func(s xtlstest.Stats) int64 { return s.WaitErrors },
	},
}

// Drop and WaitErrors bounce IQ requests with a wait error from the
// recipient's address; by default they leave other stanzas alone.
func TestDropAndWaitErrors(t *testing.T) {
	for i, tc := range bounceTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := xtlstest.NewNetwork(tc.opt)
				a := connect(t, n, alice.String(), nil)
				in := newInbox()
				b := connect(t, n, bob.String(), in)

				for range 10 {
					iq, err := request(context.Background(), a.Session, bob, nil)
					require.ErrorIs(t, err, tc.want)
					require.True(t, iq.From.Equal(bob), "from %s", iq.From)
				}
				message(t, a.Session, bob, 1)
				got := in.next(t)
				require.Equal(t, "message", got.Name.Local)
				synctest.Wait()
				require.Empty(t, in, "no request was delivered")
				require.Equal(t, int64(10), tc.counter(n.Stats()))
				closeAll(t, n, a, b)
			})
		})
	}
}

func TestDuplicate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork(xtlstest.Duplicate(1))
		a := connect(t, n, alice.String(), nil)
		in := newInbox()
		b := connect(t, n, bob.String(), in)
		for range 5 {
			_, err := request(context.Background(), a.Session, bob, nil)
			require.NoError(t, err)
		}
		message(t, a.Session, bob, 1) // not selected by the default filter
		synctest.Wait()
		var ids []string
		for len(in) > 0 {
			ids = append(ids, attr(<-in, "id"))
		}
		require.Len(t, ids, 11)
		for i := 0; i < 10; i += 2 {
			require.Equal(t, ids[i], ids[i+1], "a request and its duplicate are adjacent")
		}
		require.Equal(t, "1", ids[10])
		require.Equal(t, int64(5), n.Stats().Duplicated)
		closeAll(t, n, a, b)
	})
}

func TestReorder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork(xtlstest.Reorder(1),
			xtlstest.FaultFilter(func(s xtlstest.Stanza) bool { return s.Name == "message" }))
		a := connect(t, n, alice.String(), nil)
		in := newInbox()
		b := connect(t, n, bob.String(), in)

		// A held message goes right after the next one, which is never held.
		for i := range 4 {
			message(t, a.Session, bob, i)
		}
		var ids []string
		for range 4 {
			ids = append(ids, attr(in.next(t), "id"))
		}
		require.Equal(t, []string{"1", "0", "3", "2"}, ids)

		// With no next message, it waits for ReorderTimeout.
		start := time.Now()
		message(t, a.Session, bob, 4)
		require.Equal(t, "4", attr(in.next(t), "id"))
		require.Equal(t, xtlstest.ReorderTimeout, time.Since(start))
		require.Equal(t, int64(3), n.Stats().Reordered)
		closeAll(t, n, a, b)
	})
}

func TestLatency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const fixed = 100 * time.Millisecond
		n := xtlstest.NewNetwork(xtlstest.Latency(fixed, 0))
		a := connect(t, n, alice.String(), nil)
		in := newInbox()
		b := connect(t, n, bob.String(), in)

		start := time.Now()
		message(t, a.Session, bob, 1)
		in.next(t)
		require.Equal(t, fixed, time.Since(start), "one way")

		start = time.Now()
		_, err := request(context.Background(), a.Session, bob, nil)
		require.NoError(t, err)
		require.Equal(t, 2*fixed, time.Since(start), "round trip")
		in.next(t)

		// The network answers for an offline address after fixed.
		start = time.Now()
		_, err = request(context.Background(), a.Session, jid.MustParse("carol@example.net/c"), nil)
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.ServiceUnavailable})
		require.Equal(t, fixed, time.Since(start), "bounce")
		closeAll(t, n, a, b)
	})
}

// Jitter spreads the delays over [fixed, fixed+jitter) but keeps the order of
// a link.
func TestLatencyJitterKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const fixed, jitter, count = 10 * time.Millisecond, 50 * time.Millisecond, 200
		n := xtlstest.NewNetwork(xtlstest.Latency(fixed, jitter))
		a := connect(t, n, alice.String(), nil)
		in := newInbox()
		b := connect(t, n, bob.String(), in)

		start := time.Now()
		for i := range count {
			message(t, a.Session, bob, i)
		}
		delays := map[time.Duration]bool{}
		var last time.Duration
		for i := range count {
			require.Equal(t, strconv.Itoa(i), attr(in.next(t), "id"))
			d := time.Since(start)
			require.GreaterOrEqual(t, d, fixed)
			require.Less(t, d, fixed+jitter)
			require.GreaterOrEqual(t, d, last)
			last = d
			delays[d] = true
		}
		require.Greater(t, len(delays), 5, "jitter varies the delays")
		closeAll(t, n, a, b)
	})
}

func TestBandwidth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate = 1_000_000 // bytes per second: a byte takes 1µs
		n := xtlstest.NewNetwork(xtlstest.Bandwidth(rate))
		a := connect(t, n, alice.String(), nil)
		in := newInbox()
		b := connect(t, n, bob.String(), in)

		const count = 50
		start := time.Now()
		for i := range count {
			text := bytes.Repeat([]byte("x"), 10_000)
			msg := stanza.Message{ID: strconv.Itoa(i), To: bob, Type: stanza.ChatMessage}
			require.NoError(t, a.Send(context.Background(), msg.Wrap(payload(text))))
		}
		for range count {
			in.next(t)
		}
		elapsed := time.Since(start)
		st := n.Stats()
		require.Equal(t, int64(count), st.Stanzas)
		require.Greater(t, st.Bytes, int64(count*10_000))
		require.Equal(t, time.Duration(st.Bytes)*time.Microsecond, elapsed)
		closeAll(t, n, a, b)
	})
}

// The same seed gives a link the same fault decisions, whatever the traffic
// on other links; another seed gives other decisions.
func TestDeterminism(t *testing.T) {
	carol, dave := jid.MustParse("carol@example.net/c"), jid.MustParse("dave@example.net/d")
	run := func(seed int64, noise bool) []bool {
		n := xtlstest.NewNetwork(xtlstest.Seed(seed), xtlstest.Drop(0.3), xtlstest.Duplicate(0.3),
			xtlstest.Latency(0, time.Millisecond))
		a := connect(t, n, alice.String(), nil)
		b := connect(t, n, bob.String(), echo())
		c := connect(t, n, carol.String(), nil)
		d := connect(t, n, dave.String(), echo())
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		if noise {
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						request(ctx, c.Session, dave, nil)
					}
				}()
			}
		}
		var dropped []bool
		for range 200 {
			_, err := request(context.Background(), a.Session, bob, nil)
			if err != nil {
				require.ErrorIs(t, err, stanza.Error{Condition: stanza.RemoteServerTimeout})
			}
			dropped = append(dropped, err != nil)
		}
		cancel()
		wg.Wait()
		closeAll(t, n, a, b, c, d)
		return dropped
	}
	first := run(7, false)
	require.Contains(t, first, true)
	require.Contains(t, first, false)
	require.Equal(t, first, run(7, true))
	require.NotEqual(t, first, run(8, false))
}

var maxSizeTests = [...]struct {
	limit, size int
}{
	0: {limit: 1000, size: 2000},
	// Larger than the send buffer: the network stops buffering the stanza
	// once it is past the limit.
	1: {limit: 64 << 10, size: 4 << 20},
}

func TestMaxStanzaSize(t *testing.T) {
	for i, tc := range maxSizeTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := xtlstest.NewNetwork(xtlstest.MaxStanzaSize(tc.limit))
				a := connect(t, n, alice.String(), nil)
				in := newInbox()
				b := connect(t, n, bob.String(), in)

				small := stanza.Message{ID: "small", To: bob}.Wrap(payload(make([]byte, 0)))
				require.NoError(t, a.Send(context.Background(), small))
				require.Equal(t, "small", attr(in.next(t), "id"))

				big := stanza.Message{ID: "big", To: bob}.Wrap(payload(bytes.Repeat([]byte("x"), tc.size)))
				a.Send(context.Background(), big) // may fail once the network closed the stream
				err := a.serveResult(t)
				require.ErrorIs(t, err, stream.PolicyViolation)
				var se stream.Error
				require.ErrorAs(t, err, &se)
				require.Len(t, se.Text, 1)
				require.Equal(t, "XML stanza is too big", se.Text[0].Value)

				synctest.Wait()
				require.Empty(t, in)
				require.Equal(t, int64(1), n.Stats().PolicyViolations)
				// Alice is gone.
				_, err = request(context.Background(), b.Session, alice, nil)
				require.ErrorIs(t, err, stanza.Error{Condition: stanza.ServiceUnavailable})
				closeAll(t, n, b)
			})
		})
	}
}

// Faults can be turned on and off while sessions run.
func TestSetFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork()
		a := connect(t, n, alice.String(), nil)
		b := connect(t, n, bob.String(), echo())
		send := func() error {
			_, err := request(context.Background(), a.Session, bob, nil)
			return err
		}
		require.NoError(t, send())
		n.SetFaults(xtlstest.Drop(1))
		require.ErrorIs(t, send(), stanza.Error{Condition: stanza.RemoteServerTimeout})
		n.SetFaults(xtlstest.Drop(0), xtlstest.Latency(time.Second, 0))
		start := time.Now()
		require.NoError(t, send())
		require.Equal(t, 2*time.Second, time.Since(start))
		n.SetFaults(xtlstest.Latency(0, 0))
		start = time.Now()
		require.NoError(t, send())
		require.Zero(t, time.Since(start))
		closeAll(t, n, a, b)
	})
}
