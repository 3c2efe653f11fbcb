package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/internal/s5b"
	"github.com/xmppxtls/xtls/xtls"
)

// Bulk off the IQ path (issue 17): on the server with the client limits
// Debian ships (harness.StockLimits, which throttle every c2s session to a
// few kB/s) and its SOCKS5 bytestream proxy (XEP-0065: Prosody's proxy65,
// ejabberd's mod_proxy65), which the limits do not throttle. Each run
// alternates the proxy's ceiling (raw bytes between two clients, no TLS,
// no framing, activated the XEP-0065 way) with one xtls tunnel moved onto
// the same proxy, like throughput.go does with the IQ ceiling. Then one
// -bs-big transfer with SHA-256 at both ends, and the first byte after
// Dial with the bytestream policy on and off: discovery must not delay it.

// firstByteDials is how many dials the first-byte rows take the median of,
// for each policy: every handshake goes through the throttled c2s path.
const firstByteDials = 5

// bytestreamResult is the rows of the server with the stock limits and its
// proxy.
type bytestreamResult struct {
	ceiling, xtls float64       // payload MB/s, medians
	ratio         float64       // median of the ratios of neighbouring runs
	move          time.Duration // MoveToBytestream right after Dial, median
	bigMiB        int64
	big           time.Duration // the -bs-big transfer, one run; NaN row if it failed
	bigOK         bool
	bigMoved      time.Duration // from its first byte until it was on the bytestream; < 0: never
	// Dial → the peer reads our first byte, medians of firstByteDials,
	// with BytestreamAuto and with BytestreamOff.
	firstAuto, firstOff time.Duration
	// failed lists the checks that failed: a tunnel that did not move
	// exactly once onto the proxy or fell back to IQs, a hash that
	// differs, a big transfer that broke. Each fails the command.
	failed []string
}

func (r *bytestreamResult) rows() []row {
	big, moved, move := nan(), nan(), nan()
	if !math.IsNaN(r.xtls) {
		move = ms(r.move)
	}
	if r.bigOK {
		big = r.big.Seconds()
	}
	if r.bigMoved >= 0 {
		moved = r.bigMoved.Seconds()
	}
	return []row{
		{label: "bytestream ceiling: raw bytes through the server's proxy (XEP-0065), stock limits", unit: "MB/s", v: r.ceiling},
		{label: "xtls over the server's proxy, one tunnel, one way, stock limits", unit: "MB/s", v: r.xtls},
		{label: "xtls over proxy / bytestream ceiling, target ≥ 0.9", unit: "×", v: r.ratio},
		{label: "xtls: MoveToBytestream right after Dial, stock limits", unit: "ms", v: move},
		{label: fmt.Sprintf("%d MiB over the server's proxy, stock limits: seconds (SHA-256 exact)", r.bigMiB), unit: "s", v: big},
		{label: fmt.Sprintf("%d MiB over the server's proxy: on the bytestream after (BytestreamAuto)", r.bigMiB), unit: "s", v: moved},
		{label: "first byte after Dial, BytestreamAuto, stock limits", unit: "ms", v: ms(r.firstAuto)},
		{label: "first byte after Dial, BytestreamOff, stock limits", unit: "ms", v: ms(r.firstOff)},
		{label: "bytestream checks failed (see the log; the command fails)", unit: "checks", v: float64(len(r.failed))},
	}
}

// failf records a failed check and logs it.
func (r *bytestreamResult) failf(e *env, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.failed = append(r.failed, msg)
	e.logf("  FAILED: %s", msg)
}

func measureBytestream(e *env) (*bytestreamResult, error) {
	began := time.Now()
	defer func() { e.logf("  bytestream rows took %.1f s", time.Since(began).Seconds()) }()
	srv, err := e.stockServer()
	if err != nil {
		return nil, err
	}
	r := &bytestreamResult{bigMiB: e.o.bsBig >> 20}
	if err := proxyRates(e, srv, r); err != nil {
		return nil, err
	}
	if err := firstByteAutoOff(e, srv, r); err != nil {
		return nil, err
	}
	if err := bigTransfer(e, srv, r); err != nil {
		return nil, err
	}
	return r, nil
}

// loginPair logs alice and bob in to srv with the policy m; the caller
// aborts them (a stock-limited session may have a queue at the shaper).
func loginPair(e *env, srv *harness.Server, m movePolicy) (a, b *party, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if a, err = login(ctx, srv, "alice", tuning{chunk: e.o.chunk, moves: m}); err != nil {
		return nil, nil, err
	}
	if b, err = login(ctx, srv, "bob", tuning{chunk: e.o.chunk, moves: m}); err != nil {
		a.abort()
		return nil, nil, err
	}
	return a, b, nil
}

// proxyRates alternates the proxy's ceiling and xtls over the proxy,
// -runs times each.
func proxyRates(e *env, srv *harness.Server, r *bytestreamResult) error {
	// BytestreamOnRequest and an explicit MoveToBytestream right after
	// Dial, rather than the default BytestreamAuto: the ceiling is timed
	// from its first byte, after discovery and activation, so the tunnel
	// is too, after its move; with BytestreamAuto the first bytes would
	// wait on the throttled IQ path for the move (the big transfer below
	// shows the default at work).
	a, b, err := loginPair(e, srv, moveOnRequest)
	if err != nil {
		return err
	}
	defer a.abort()
	defer b.abort()
	proxy, host, err := discoverProxy(a, srv)
	if err != nil {
		return err
	}
	var xs, cs, rs, mvs []float64
	// What the CPU did tells a tunnel that waits from one that computes.
	var xcpu, ccpu cpuUse
	for range e.o.runs {
		u := startCPU(srv.PID())
		c, err := proxyCeiling(a, b, proxy, host, e.o.size)
		if err != nil {
			return fmt.Errorf("bytestream ceiling: %w", err)
		}
		ccpu.add(u.stop())
		cs = append(cs, c)
		u = startCPU(srv.PID())
		x, mv, err := xtlsOverProxy(a, b, e.o.size)
		xcpu.add(u.stop())
		var pathErr *pathError
		switch {
		case errors.As(err, &pathErr):
			r.failf(e, "xtls over the proxy: %v", err)
			continue
		case err != nil:
			return fmt.Errorf("xtls over the proxy: %w", err)
		}
		xs, rs, mvs = append(xs, x), append(rs, x/c), append(mvs, float64(mv))
	}
	r.ceiling, r.xtls, r.ratio = median(cs), nan(), nan()
	if len(xs) > 0 {
		r.xtls, r.ratio, r.move = median(xs), median(rs), time.Duration(median(mvs))
	}
	e.logf("  bs ceil  %v\n  bs xtls  %v\n  r_bs     %v → %.2f, move %.0f ms", round(cs), round(xs), round(rs), r.ratio, ms(r.move))
	mb := float64(e.o.runs) * float64(e.o.size) / 1e6
	e.logf("  CPU ms per MB (clients / server / wall): xtls over the proxy (handshake and move included) %s, bytestream ceiling %s", xcpu.per(mb), ccpu.per(mb))
	return nil
}

// discoverProxy finds the proxy in the server's disco#items and asks it
// for its streamhost, as a client does (the raw ceiling's part; xtls does
// its own), and checks it is the server's.
func discoverProxy(a *party, srv *harness.Server) (jid.JID, s5b.StreamHost, error) {
	want, ok := srv.Proxy65()
	if !ok {
		return jid.JID{}, s5b.StreamHost{}, errors.New("the server runs no proxy")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	proxies, err := s5b.FindProxies(ctx, a.s, a.addr.Domain())
	if err != nil {
		return jid.JID{}, s5b.StreamHost{}, err
	}
	if len(proxies) != 1 || !proxies[0].Equal(want.JID) {
		return jid.JID{}, s5b.StreamHost{}, fmt.Errorf("proxies in %s's disco#items: %v, want %s", srv.Domain(), proxies, want.JID)
	}
	hosts, err := s5b.GetStreamHosts(ctx, a.s, proxies[0])
	if err != nil {
		return jid.JID{}, s5b.StreamHost{}, err
	}
	if len(hosts) == 0 || hosts[0].Addr() != want.Addr() {
		return jid.JID{}, s5b.StreamHost{}, fmt.Errorf("streamhosts %v, want %s", hosts, want.Addr())
	}
	return proxies[0], hosts[0], nil
}

// proxyCeiling opens a mediated bytestream from a (the requester) to b
// (the target) through the proxy, activated the XEP-0065 way, and moves n
// raw bytes one way; a closes its side after the last, b reads to the end
// of the stream. It returns payload MB/s from the first byte written to
// the end of the stream. The close is also what releases the tail that
// Prosody 0.12's proxy65 holds back (see harness.Proxy65).
func proxyCeiling(a, b *party, proxy jid.JID, host s5b.StreamHost, n int64) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var sid [8]byte
	rand.Read(sid[:])
	sidText := hex.EncodeToString(sid[:])
	target, err := s5b.Dial(ctx, host, sidText, a.addr, b.addr)
	if err != nil {
		return 0, err
	}
	defer target.Close()
	requester, err := s5b.Dial(ctx, host, sidText, a.addr, b.addr)
	if err != nil {
		return 0, err
	}
	defer requester.Close()
	if err := s5b.Activate(ctx, a.s, proxy, sidText, b.addr); err != nil {
		return 0, err
	}
	deadline, _ := ctx.Deadline() // a stuck proxy fails the run
	target.SetDeadline(deadline)
	requester.SetDeadline(deadline)

	src := make([]byte, 64<<10)
	rand.Read(src)
	wrote := make(chan error, 1)
	start := time.Now()
	go func() {
		wrote <- func() error {
			for sent := int64(0); sent < n; sent += int64(len(src)) {
				if _, err := requester.Write(src[:min(int64(len(src)), n-sent)]); err != nil {
					return err
				}
			}
			cw, ok := requester.(interface{ CloseWrite() error })
			if !ok {
				return fmt.Errorf("%T cannot close its write side", requester)
			}
			return cw.CloseWrite()
		}()
	}()
	got, err := io.CopyBuffer(io.Discard, target, make([]byte, 64<<10))
	d := time.Since(start)
	if werr := <-wrote; err == nil {
		err = werr
	}
	if err == nil && got != n {
		err = fmt.Errorf("read %d of %d bytes", got, n)
	}
	if err != nil {
		return 0, err
	}
	return float64(n) / d.Seconds() / 1e6, nil
}

// pathError is alice's tunnel not taking the path a row measures.
type pathError struct {
	path xtls.PathState
	why  string
}

func (e *pathError) Error() string {
	return fmt.Sprintf("alice's tunnel %s (path %+v)", e.why, e.path)
}

// xtlsOverProxy dials a tunnel from a to b, moves it onto the proxy and
// sends n bytes one way; it returns payload MB/s from the first byte
// written to the last read (neither the handshake nor the move counted)
// and how long the move took. A tunnel that did not move exactly once, or
// fell back to IQs, or sent less than n bytes on the bytestream, is a
// *pathError.
func xtlsOverProxy(a, b *party, n int64) (float64, time.Duration, error) {
	c1, c2, err := pipe(a, b)
	if err != nil {
		return 0, 0, err
	}
	defer c1.Close()
	defer c2.Close()
	x := c1.(*xtls.Conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := x.MoveToBytestream(ctx); err != nil {
		return 0, 0, &pathError{path: x.Path(), why: "did not move: " + err.Error()}
	}
	move := time.Since(start)
	rate, err := transfer(c1, c2, n, false)
	if err != nil {
		return 0, 0, err
	}
	if p := x.Path(); p.Moves != 1 || p.Fallbacks != 0 || p.SentOnBytestream < n {
		return 0, 0, &pathError{path: p, why: fmt.Sprintf("did not send all %d bytes on the bytestream after one move, without a fallback", n)}
	}
	return rate, move, nil
}

// firstByteAutoOff measures the first byte after Dial through the
// throttled c2s path with BytestreamAuto and with BytestreamOff, dial by
// dial in alternation on two pairs of sessions, so that both see the same
// shaper history.
func firstByteAutoOff(e *env, srv *harness.Server, r *bytestreamResult) error {
	aa, ba, err := loginPair(e, srv, moveAuto)
	if err != nil {
		return err
	}
	defer aa.abort()
	defer ba.abort()
	ao, bo, err := loginPair(e, srv, stayOnIQs)
	if err != nil {
		return err
	}
	defer ao.abort()
	defer bo.abort()
	var auto, off []float64
	pairs := [2]struct {
		name string
		a, b *party
		ds   *[]float64
	}{{"BytestreamAuto", aa, ba, &auto}, {"BytestreamOff", ao, bo, &off}}
	for i := range firstByteDials {
		// Which goes first alternates: once a shaper's burst is spent,
		// a pair's dial is faster the longer the other's took.
		for j := range pairs {
			p := pairs[(i+j)%2]
			d, _, err := firstByte(p.a, p.b, 1)
			if err != nil {
				return fmt.Errorf("first byte, %s: %w", p.name, err)
			}
			*p.ds = append(*p.ds, float64(d))
		}
	}
	r.firstAuto, r.firstOff = time.Duration(median(auto)), time.Duration(median(off))
	e.logf("  first byte, stock limits: BytestreamAuto %v, BytestreamOff %v ms", round(msAll(auto)), round(msAll(off)))
	return nil
}

// msAll converts durations (as float64 nanoseconds) to milliseconds.
func msAll(ds []float64) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = ms(time.Duration(d))
	}
	return out
}

// bigTransfer moves -bs-big MiB through one tunnel with the default
// policy, BytestreamAuto: the tunnel starts on IQs and moves by itself
// once its first Write waits on the throttled path. SHA-256 is taken at
// both ends; the time runs from the first byte written to the end of the
// stream, the move included. A hash that differs, a broken transfer or a
// tunnel that did not move exactly once is a failed check.
func bigTransfer(e *env, srv *harness.Server, r *bytestreamResult) error {
	a, b, err := loginPair(e, srv, moveAuto)
	if err != nil {
		return err
	}
	defer a.abort()
	defer b.abort()
	c1, c2, err := pipe(a, b)
	if err != nil {
		return err
	}
	defer c1.Close()
	defer c2.Close()
	n := e.o.bsBig
	// Over the throttled IQ path alone it would take hours: a tunnel
	// that does not move fails on this deadline instead. Before it
	// moves, what it has buffered crosses the shaper at a few kB/s
	// (about a minute on ejabberd).
	deadline := time.Now().Add(3*time.Minute + time.Duration(n/(1<<20))*time.Second)
	c1.SetDeadline(deadline)
	c2.SetDeadline(deadline)

	sent, got := sha256.New(), sha256.New()
	wrote := make(chan error, 1)
	start := time.Now()
	moved := watchMove(c1.(*xtls.Conn), start)
	go func() {
		wrote <- func() error {
			src := io.TeeReader(io.LimitReader(mrand.NewChaCha8([32]byte{17}), n), sent)
			if _, err := io.CopyBuffer(c1, src, make([]byte, 64<<10)); err != nil {
				return err
			}
			return c1.(*xtls.Conn).CloseWrite()
		}()
	}()
	m, err := io.CopyBuffer(got, c2, make([]byte, 64<<10))
	r.big = time.Since(start)
	r.bigMoved = moved()
	if werr := <-wrote; err == nil {
		err = werr
	}
	p1, p2 := c1.(*xtls.Conn).Path(), c2.(*xtls.Conn).Path()
	e.logf("  %d MiB over the proxy in %.1f s, on the bytestream after %.1f s: alice %+v, bob %+v", n>>20, r.big.Seconds(), r.bigMoved.Seconds(), p1, p2)
	switch {
	case err != nil:
		r.failf(e, "%d MiB over the proxy: %v after %d bytes", n>>20, err, m)
	case m != n:
		r.failf(e, "%d MiB over the proxy: read %d of %d bytes", n>>20, m, n)
	case !bytes.Equal(sent.Sum(nil), got.Sum(nil)):
		r.failf(e, "%d MiB over the proxy: SHA-256 %x sent, %x received", n>>20, sent.Sum(nil), got.Sum(nil))
	case p1.Moves != 1 || p1.Fallbacks != 0:
		r.failf(e, "%d MiB over the proxy: %v", n>>20, &pathError{path: p1, why: "did not move exactly once without a fallback"})
	default:
		r.bigOK = true
	}
	return nil
}

// watchMove polls c's path from start until it is on a bytestream; the
// function it returns stops the polling and says when that was (-1:
// not yet).
func watchMove(c *xtls.Conn, start time.Time) func() time.Duration {
	stop, moved := make(chan struct{}), make(chan time.Duration, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				moved <- -1
				return
			case <-tick.C:
				if c.Path().Bytestream {
					moved <- time.Since(start)
					return
				}
			}
		}
	}()
	return func() time.Duration {
		close(stop)
		return <-moved
	}
}
