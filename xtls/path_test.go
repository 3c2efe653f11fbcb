package xtls_test

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

func bsConfig() xtls.Config {
	return xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true, Bytestreams: xtls.BytestreamOnRequest}
}

// sendThrough writes n pseudo-random bytes from one end, reads them at the other
// and reports whether they arrived exact, with the reader's error. during,
// if not nil, runs once the reader has read half.
func sendThrough(t testing.TB, from, to *xtls.Conn, n int64, seed byte, during func()) (exact bool, readErr error) {
	t.Helper()
	want := sha256.New()
	werr := make(chan error, 1)
	go func() {
		src := io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
		_, err := io.Copy(from, io.TeeReader(src, want))
		werr <- err
	}()
	got := sha256.New()
	m, err := io.CopyN(got, to, n/2)
	if err == nil && during != nil {
		during()
	}
	if err == nil {
		var k int64
		k, err = io.CopyN(got, to, n-n/2)
		m += k
	}
	if err != nil {
		return false, err
	}
	require.NoError(t, <-werr)
	return m == n && string(want.Sum(nil)) == string(got.Sum(nil)), nil
}

// A tunnel moves onto the proxy of alice's server (bob, on another
// server, finds it as the peer's) in the middle of a transfer each way,
// back to IQs, and onto it again: the bytes arrive exact, most of them
// through the proxy, with the same TLS session (no new handshake).
func TestBytestreamMoveAndBack(t *testing.T) {
	w := newWorld(t, xtlstest.Proxy65("example.net"))
	a := w.join(aliceJID, bsConfig())
	b := w.join(bobJID, bsConfig())
	c1, c2, err := dialAccept(t, a, b)
	require.NoError(t, err)
	before := c1.ConnectionState().TLSUnique

	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		exact, err := sendThrough(t, c2, c1, 4<<20, 2, nil)
		require.NoError(t, err)
		require.True(t, exact, "bob → alice")
	}()
	exact, err := sendThrough(t, c1, c2, 16<<20, 1, func() {
		require.NoError(t, c1.MoveToBytestream(ctx))
		p := c1.Path()
		require.True(t, p.Bytestream)
		require.Equal(t, "proxy.example.net", p.Proxy.String())
	})
	require.NoError(t, err)
	require.True(t, exact, "alice → bob")
	wg.Wait()

	<-c2.LeaveBytestream()
	require.False(t, c1.Path().Bytestream)
	exact, err = sendThrough(t, c1, c2, 1<<20, 3, nil)
	require.NoError(t, err)
	require.True(t, exact)
	require.NoError(t, c2.MoveToBytestream(ctx), "bob moves it this time")
	exact, err = sendThrough(t, c1, c2, 4<<20, 4, nil)
	require.NoError(t, err)
	require.True(t, exact)

	p1, p2 := c1.Path(), c2.Path()
	require.Equal(t, 2, p1.Moves)
	require.Zero(t, p1.Fallbacks)
	require.Greater(t, p1.SentOnBytestream, int64(8<<20))
	require.Greater(t, p2.ReceivedOnBytestream, int64(8<<20))
	require.Equal(t, before, c1.ConnectionState().TLSUnique, "no new handshake")
	require.Equal(t, int64(2), w.n.Proxy("example.net").Stats().Activated)
	require.NoError(t, c1.Close())
	_, err = io.ReadAll(c2)
	require.NoError(t, err)
	require.NoError(t, c2.Close())
}

// With BytestreamAuto (the default) a tunnel that moves bulk moves by
// itself once it has sent BytestreamAfter bytes; a chat-sized exchange
// does not.
func TestBytestreamAuto(t *testing.T) {
	w := newWorld(t, xtlstest.Proxy65("example.net"))
	cfg := xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true}
	a := w.join(aliceJID, cfg)
	cfg.Pins = xtls.NewMemPinStore()
	b := w.join(bobJID, cfg)
	c1, c2, err := dialAccept(t, a, b)
	require.NoError(t, err)

	exact, err := sendThrough(t, c1, c2, 16<<10, 1, nil)
	require.NoError(t, err)
	require.True(t, exact)
	require.Zero(t, c1.Path().Moves, "16 KiB stay on IQs")

	// Bulk: write until the tunnel has moved (it does so in the
	// background), then a little more.
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, c2)
	}()
	buf := make([]byte, 64<<10)
	var sent int
	for !c1.Path().Bytestream {
		_, err := c1.Write(buf)
		require.NoError(t, err)
		sent += len(buf)
		require.Less(t, sent, 1<<30, "no move after 1 GiB")
	}
	for range 16 {
		_, err := c1.Write(buf)
		require.NoError(t, err)
	}
	require.NoError(t, c1.CloseWrite())
	<-done
	require.Equal(t, 1, c1.Path().Moves)
	require.NotZero(t, c1.Path().SentOnBytestream)
	c1.Close()
	c2.Close()
}

// Whoever takes the offerer's place in the proxy's slot cannot splice in:
// a third party that connects with the right DST.ADDR first (the
// offerer's own connection is then refused, so it gives the attempt up
// and tells the target), or the proxy's operator replacing what the
// offerer sends (the target finds the authenticator wrong). None of their
// bytes is delivered, and the tunnel goes on over IQs.
func TestBytestreamHijackerRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  func(w **world, hijacked chan<- struct{}) xtlstest.ProxyOption
	}{
		{"third party", func(w **world, hijacked chan<- struct{}) xtlstest.ProxyOption {
			return xtlstest.ProxyOnConnect(func(dst string, nth int) {
				if nth != 1 {
					return
				}
				h, err := (*w).n.Proxy("example.net").Dial(context.Background(), dst)
				if err != nil {
					return
				}
				// A guessed authenticator, then what it would like the
				// target to take for tunnel data.
				_, _ = h.Write(make([]byte, 32+4096))
				hijacked <- struct{}{}
			})
		}},
		{"operator", func(_ **world, hijacked chan<- struct{}) xtlstest.ProxyOption {
			return xtlstest.ProxyTamper(func(c xtlstest.Chunk) ([]byte, bool) {
				if c.FromRequester && c.Offset == 0 {
					out := append([]byte(nil), c.Data...)
					clear(out[:min(len(out), 32)])
					hijacked <- struct{}{}
					return out, false
				}
				return c.Data, false
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w *world
			hijacked := make(chan struct{}, 1)
			w = newWorld(t, xtlstest.Proxy65("example.net", tc.opt(&w, hijacked)))
			a := w.join(aliceJID, bsConfig())
			b := w.join(bobJID, bsConfig())
			c1, c2, err := dialAccept(t, a, b)
			require.NoError(t, err)
			exact, err := sendThrough(t, c1, c2, 2<<20, 1, func() {
				err := c1.MoveToBytestream(context.Background())
				require.ErrorIs(t, err, xtls.ErrNoBytestream)
				t.Log(err)
			})
			require.NoError(t, err)
			require.True(t, exact)
			<-hijacked
			require.False(t, c1.Path().Bytestream)
			require.False(t, c2.Path().Bytestream)
			require.Zero(t, c2.Path().ReceivedOnBytestream)
			c1.Close()
			c2.Close()
		})
	}
}

// A proxy that cuts the bytestream in the middle of a transfer: the tunnel
// goes on over IQs, sends there what the proxy lost, and the bytes arrive
// exact.
func TestBytestreamProxyCuts(t *testing.T) {
	w := newWorld(t, xtlstest.Proxy65("example.net", xtlstest.CutAfter(3<<20+12345)))
	a := w.join(aliceJID, bsConfig())
	b := w.join(bobJID, bsConfig())
	c1, c2, err := dialAccept(t, a, b)
	require.NoError(t, err)
	exact, err := sendThrough(t, c1, c2, 8<<20, 1, func() {
		require.NoError(t, c1.MoveToBytestream(context.Background()))
	})
	require.NoError(t, err)
	require.True(t, exact)
	p := c1.Path()
	require.Equal(t, 1, p.Moves)
	require.Equal(t, 1, p.Fallbacks)
	require.False(t, p.Bytestream)
	c1.Close()
	c2.Close()
}

// A proxy that corrupts or replays what it relays never makes an end read
// wrong data: the frame is refused (the tunnel falls back to IQs and the
// bytes arrive exact) or TLS refuses the record (the tunnel fails).
func TestBytestreamTamperingProxy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(c xtlstest.Chunk) ([]byte, bool)
	}{
		{"flip", func(c xtlstest.Chunk) ([]byte, bool) {
			if c.FromRequester && c.Offset < 1<<20 && c.Offset+int64(len(c.Data)) > 1<<20 {
				out := append([]byte(nil), c.Data...)
				out[1<<20-c.Offset] ^= 0x40
				return out, false
			}
			return c.Data, false
		}},
		{"replay", func(c xtlstest.Chunk) ([]byte, bool) {
			if c.FromRequester && c.Offset < 1<<20 && c.Offset+int64(len(c.Data)) > 1<<20 {
				return append(append([]byte(nil), c.Data...), c.Data...), false
			}
			return c.Data, false
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, xtlstest.Proxy65("example.net", xtlstest.ProxyTamper(tc.tamper)))
			a := w.join(aliceJID, bsConfig())
			b := w.join(bobJID, bsConfig())
			c1, c2, err := dialAccept(t, a, b)
			require.NoError(t, err)
			require.NoError(t, c1.MoveToBytestream(context.Background()))
			exact, err := sendThrough(t, c1, c2, 4<<20, 1, nil)
			t.Logf("exact %v, err %v, path %+v", exact, err, c2.Path())
			require.True(t, exact || err != nil, "wrong data delivered without an error")
			c1.Close()
			c2.Close()
		})
	}
}

// A peer with bytestreams off refuses the offer; without any proxy there is
// nothing to offer. Either way the tunnel stays on IQs and works.
func TestBytestreamRefusals(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		w := newWorld(t, xtlstest.Proxy65("example.net"))
		a := w.join(aliceJID, bsConfig())
		cfg := bsConfig()
		cfg.Bytestreams = xtls.BytestreamOff
		b := w.join(bobJID, cfg)
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		err = c1.MoveToBytestream(context.Background())
		require.ErrorIs(t, err, xtls.ErrNoBytestream)
		require.ErrorContains(t, err, "bytestreams are off")
		require.ErrorIs(t, c2.MoveToBytestream(context.Background()), xtls.ErrNoBytestream)
		exact, err := sendThrough(t, c1, c2, 256<<10, 1, nil)
		require.NoError(t, err)
		require.True(t, exact)
		c1.Close()
		c2.Close()
	})
	t.Run("no proxy", func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, bsConfig())
		b := w.join(bobJID, bsConfig())
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err = c1.MoveToBytestream(ctx)
		require.ErrorIs(t, err, xtls.ErrNoBytestream)
		require.ErrorContains(t, err, "no proxy")
		c1.Close()
		c2.Close()
	})
}
