package xtls_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// stayedOnIQs is what the log says of each automatic move that did not
// happen.
const stayedOnIQs = "tunnel stays on IQs"

// autoPair is a tunnel from alice, who moves by herself after
// bytestreamAfter bytes and logs to the returned function, to bob, who
// takes offers (or not: off) but makes none; bob reads everything.
func autoPair(t *testing.T, w *world, bytestreamAfter int, off bool) (c1, c2 *xtls.Conn, logged func() string) {
	t.Helper()
	logger, logged := newLogger()
	a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true,
		BytestreamAfter: bytestreamAfter, Logger: logger})
	cfg := bsConfig()
	if off {
		cfg.Bytestreams = xtls.BytestreamOff
	}
	b := w.join(bobJID, cfg)
	c1, c2, err := dialAccept(t, a, b)
	require.NoError(t, err)
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(io.Discard, c2)
	}()
	t.Cleanup(func() {
		c1.Close()
		c2.Close()
		<-read
	})
	return c1, c2, logged
}

// An automatic move that failed is not tried again before its back-off,
// which starts at 30 s and doubles up to 10 min (docs/protocol.md §8.1.2):
// a tunnel that writes every second keeps asking, and is let through
// only that often. Without a proxy every attempt fails; fake time lets the
// back-off reach its bound.
func TestBytestreamAutoBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		c1, _, logged := autoPair(t, w, 1, false)
		const tick = time.Second
		want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
		var total time.Duration
		for _, d := range want {
			total += d
		}
		var attempts []time.Duration // since the first Write
		for start := time.Now(); time.Since(start) < total+want[len(want)-1]/2; time.Sleep(tick) {
			_, err := c1.Write([]byte{'x'})
			require.NoError(t, err)
			synctest.Wait() // an attempt the Write started has failed
			if n := strings.Count(logged(), stayedOnIQs); n > len(attempts) {
				require.Equal(t, len(attempts)+1, n, "one attempt at a time")
				attempts = append(attempts, time.Since(start))
			}
		}
		require.Contains(t, logged(), "no proxy found")
		require.Len(t, attempts, len(want)+1, "attempts at %v", attempts)
		for i, d := range want {
			gap := attempts[i+1] - attempts[i]
			require.Greater(t, gap, d, "attempts at %v: one came before its back-off", attempts)
			require.LessOrEqual(t, gap, d+tick, "attempts at %v", attempts)
		}
	})
}

// A refused automatic move, and one whose bytestream broke, are not tried
// again at once: the tunnel goes on over IQs while the application keeps
// writing (for longer than the once-a-second bound on asking), with one
// log record for the refusal, and the tunnel moves once.
func TestBytestreamAutoNoRetry(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proxy []xtlstest.ProxyOption
		off   bool // bob refuses
		moves int
	}{
		{"refused", nil, true, 0},
		{"broken", []xtlstest.ProxyOption{xtlstest.CutAfter(256 << 10)}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, xtlstest.Proxy65("example.net", tc.proxy...))
			c1, _, logged := autoPair(t, w, 64<<10, tc.off)
			over := func() bool { // the attempt is over and the tunnel on IQs
				if tc.off {
					return strings.Contains(logged(), stayedOnIQs)
				}
				return c1.Path().Fallbacks > 0
			}
			buf := make([]byte, 16<<10)
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			var since time.Time
			for begun := time.Now(); since.IsZero() || time.Since(since) < 2500*time.Millisecond; <-tick.C {
				_, err := c1.Write(buf)
				require.NoError(t, err)
				if since.IsZero() && over() {
					since = time.Now()
				}
				require.Less(t, time.Since(begun), time.Minute, "the first attempt never ended")
			}
			p := c1.Path()
			t.Logf("%+v", p)
			require.Equal(t, tc.moves, p.Moves, "moved again")
			require.False(t, p.Bytestream)
			if tc.off {
				require.Equal(t, 1, strings.Count(logged(), stayedOnIQs), "tried again")
				require.Contains(t, logged(), "bytestreams are off")
			}
		})
	}
}

// Both ends offer at once, again and again: the offers cross and are both
// refused (each end is busy with its own). Or one end offers while the
// other is taking its offer: that one is refused and the first goes on.
// Never do two bytestreams come of it, the two ends agree on the path, and
// the bytes stay exact whichever it is.
func TestBytestreamCrossingOffers(t *testing.T) {
	for _, latency := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprint(latency), func(t *testing.T) {
			// late, if set, runs when a target connects to the proxy: it
			// is taking the offer, and its own move is under way.
			var late atomic.Pointer[func()]
			w := newWorld(t, xtlstest.Latency(latency, 0), xtlstest.Proxy65("example.net",
				xtlstest.ProxyOnConnect(func(_ string, nth int) {
					if f := late.Swap(nil); nth == 1 && f != nil {
						(*f)()
					}
				})))
			a := w.join(aliceJID, bsConfig())
			b := w.join(bobJID, bsConfig())
			c1, c2, err := dialAccept(t, a, b)
			require.NoError(t, err)
			conns := [2]*xtls.Conn{c1, c2}
			ctx := context.Background()
			moves := 0
			for round := range 6 {
				atOnce := round%3 != 2
				var (
					errs     [2]error
					wg       sync.WaitGroup
					start    = make(chan struct{})
					lateDone = make(chan struct{})
				)
				if atOnce {
					close(lateDone)
				}
				for i, c := range conns {
					move := func() { errs[i] = c.MoveToBytestream(ctx) }
					if !atOnce && i == round%2 {
						f := func() { move(); close(lateDone) }
						late.Store(&f)
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						move()
					}()
				}
				close(start)
				wg.Wait()
				select {
				case <-lateDone:
				case <-time.After(time.Minute):
					t.Fatalf("round %d: the other end never took the first offer", round)
				}
				moved := -1
				for i, err := range errs {
					if err == nil {
						require.Equal(t, -1, moved, "round %d: both moved", round)
						moved = i
					} else {
						require.ErrorIs(t, err, xtls.ErrNoBytestream)
					}
				}
				t.Logf("round %d (at once %v): %v", round, atOnce, errs)
				if !atOnce {
					require.NotEqual(t, -1, moved, "round %d: the first offer was taken", round)
				}
				exchange(t, c1, c2, 512<<10)
				if moved >= 0 {
					moves++
					require.True(t, conns[moved].Path().Bytestream)
					// The bytestream closes once the other end has said
					// BYE too: it was on it. The other end's closes once
					// it has both BYEs, a moment later: wait for it too.
					<-conns[moved].LeaveBytestream()
					<-conns[1-moved].LeaveBytestream()
				}
				for _, c := range conns {
					p := c.Path()
					require.False(t, p.Bytestream, "round %d", round)
					require.Equal(t, moves, p.Moves, "round %d", round)
					require.Zero(t, p.Fallbacks, "round %d", round)
				}
			}
			require.Equal(t, int64(moves), w.n.Proxy("example.net").Stats().Activated)
			require.NoError(t, c1.Close())
			_, err = io.ReadAll(c2)
			require.NoError(t, err)
			require.NoError(t, c2.Close())
		})
	}
}

// An ACCEPT or REFUSE whose nonce names no attempt is ignored (and
// logged), even while an attempt of each end is under way: the offerer
// does not take it for the answer it waits for, the target does not give
// up the offer it is taking, and the move then completes.
func TestBytestreamStrayAnswers(t *testing.T) {
	reached, release := make(chan struct{}), make(chan struct{})
	var once, unblock sync.Once
	w := newWorld(t, xtlstest.Proxy65("example.net", xtlstest.ProxyOnConnect(func(_ string, nth int) {
		if nth == 1 { // bob, the target, connects to the proxy first
			once.Do(func() { close(reached) })
			<-release
		}
	})))
	t.Cleanup(func() { unblock.Do(func() { close(release) }) })
	la, loggedA := newLogger()
	ca := bsConfig()
	ca.Logger = la
	a := w.join(aliceJID, ca)
	lb, loggedB := newLogger()
	cb := bsConfig()
	cb.Logger = lb
	b := w.join(bobJID, cb)
	c1, c2, err := dialAccept(t, a, b)
	require.NoError(t, err)

	moved := make(chan error, 1)
	go func() { moved <- c1.MoveToBytestream(context.Background()) }()
	<-reached // alice waits for bob's answer; bob is taking her offer
	// stray sends a record from one end, then a byte of application data:
	// records are read in order, so once the byte arrives the record has
	// been handled.
	stray := func(from, to *xtls.Conn, typ byte, body ...byte) {
		t.Helper()
		nonce := make([]byte, 16)
		_, _ = rand.Read(nonce)
		require.NoError(t, xtls.WriteRecord(from, typ, append(nonce, body...)))
		_, err := from.Write([]byte{typ})
		require.NoError(t, err)
		got := make([]byte, 1)
		_, err = io.ReadFull(to, got)
		require.NoError(t, err)
		require.Equal(t, typ, got[0])
	}
	proxy := "proxy.evil.example" // not one alice offered
	stray(c2, c1, xtls.RecAccept, append([]byte{byte(len(proxy))}, proxy...)...)
	stray(c2, c1, xtls.RecRefuse, 3)
	stray(c1, c2, xtls.RecRefuse, 4)
	unblock.Do(func() { close(release) })

	require.NoError(t, <-moved)
	exact, err := sendThrough(t, c1, c2, 1<<20, 1, nil)
	require.NoError(t, err)
	require.True(t, exact)
	require.True(t, c1.Path().Bytestream)
	require.NotZero(t, c2.Path().ReceivedOnBytestream)
	require.Equal(t, 2, strings.Count(loggedA(), "answers no attempt"), loggedA())
	require.Equal(t, 1, strings.Count(loggedB(), "answers no attempt"), loggedB())
	require.NoError(t, c1.Close())
	_, err = io.ReadAll(c2)
	require.NoError(t, err)
	require.NoError(t, c2.Close())
}

// Behind a server's shaper (3000 B/s, ejabberd's stock c2s rate) a tunnel
// moves while its first large Write is still waiting, not once that Write
// is through (it would take a minute and a half over IQs): the offer goes
// ahead of the application's records, which are small on such a path, and
// the proxies were found when the tunnel started. Of a 256 KiB Write, at
// most a few seconds' worth crosses the throttled IQ path.
func TestBytestreamMoveBehindShaper(t *testing.T) {
	w := newWorld(t, xtlstest.Proxy65("example.net"), xtlstest.Bandwidth(3000))
	c1, _, _ := autoPair(t, w, 64<<10, false)
	buf := make([]byte, 256<<10)
	_, err := c1.Write(buf)
	require.NoError(t, err)
	require.NoError(t, c1.CloseWrite()) // all of it acknowledged
	p := c1.Path()
	t.Logf("%+v", p)
	require.True(t, p.Bytestream)
	require.Equal(t, 1, p.Moves)
	onIQs := int64(len(buf)) - p.SentOnBytestream
	require.Less(t, onIQs, int64(24<<10), "%d bytes of the Write crossed the shaper before the move", onIQs)
}
