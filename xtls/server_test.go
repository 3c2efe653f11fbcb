package xtls_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"regexp"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// dataText finds the Base64 text of a data element after a tunnel's
// first: an initiator's optimistic first flight (its TLS ClientHello, ~2
// KB with the post-quantum key share) goes in one element of up to
// FirstFlightMax whatever the chunk, when it leaves before the proceed.
var dataText = regexp.MustCompile(`<data [^>]*urn:xmpp:xtls:0[^>]*seq=["'][1-9][0-9]*["'][^>]*>([A-Za-z0-9+/=]*)</data>`)

// The Handler asks the server's software once and chooses the chunk size
// from it (2880 on Prosody) unless the application set one; both ends of a
// tunnel do, before Dial and Accept return, and the data elements follow.
func TestChunkSizeFollowsServer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		server   string
		set      int // Config.Transport.ChunkSize
		want     int // ChunkSize
		largest  int // the largest block sent: the chosen chunk, or a larger one only as the path shows it can take it
		nQueries int // disco#info queries each end sends to its server
	}{
		{"prosody", "Prosody", 0, 2880, 2880, 1},
		// Blocks start at 2 KiB (one takes about a second behind the
		// slowest shaper a server ships) and grow only as the path shows
		// a rate; under synctest no time passes between a block and its
		// answer, so it never does.
		{"ejabberd", "ejabberd", 0, 16384, 2048, 1},
		{"no disco", "", 0, 5120, 2048, 1},
		{"set by the application", "Prosody", 4000, 4000, 4000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				queries := map[string]int{}
				largest := 0
				w := newWorld(t, xtlstest.ServerName(tc.server), xtlstest.Trace(func(s xtlstest.Stanza) {
					mu.Lock()
					defer mu.Unlock()
					if s.To.Equal(s.From.Domain()) && bytes.Contains(s.Raw, []byte("disco#info")) {
						queries[s.Sender.String()]++
					}
					if m := dataText.FindSubmatch(s.Raw); m != nil {
						d, err := base64.StdEncoding.DecodeString(string(m[1]))
						if err != nil {
							panic(err)
						}
						largest = max(largest, len(d))
					}
				}))
				cfg := func() xtls.Config {
					c := xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true}
					if tc.set != 0 {
						c.Transport = &transport.Config{ChunkSize: tc.set}
					}
					return c
				}
				a := w.join(aliceJID, cfg())
				b := w.join(bobJID, cfg())
				for range 2 { // a second tunnel asks nothing more
					x, y, err := dialAccept(t, a, b)
					require.NoError(t, err)
					require.Equal(t, tc.want, a.h.ChunkSize())
					require.Equal(t, tc.want, b.h.ChunkSize())
					go func() {
						x.Write(make([]byte, 100<<10))
						x.CloseWrite()
					}()
					got, err := io.ReadAll(y)
					require.NoError(t, err)
					require.Len(t, got, 100<<10)
					x.Close()
					y.Close()
				}
				mu.Lock()
				defer mu.Unlock()
				require.Equal(t, tc.largest, largest)
				require.Equal(t, tc.nQueries, queries[a.addr.String()])
				require.Equal(t, tc.nQueries, queries[b.addr.String()])
			})
		})
	}
}

// A query cut short by its Dial's context leaves the chunk size as it was
// and is asked again by the next Dial.
func TestChunkSizeQueryRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		queries := 0
		w := newWorld(t, xtlstest.ServerName("Prosody"), xtlstest.Latency(50*time.Millisecond, 0),
			xtlstest.Trace(func(s xtlstest.Stanza) {
				mu.Lock()
				defer mu.Unlock()
				if s.To.Equal(s.From.Domain()) && bytes.Contains(s.Raw, []byte("disco#info")) && s.Sender.String() == aliceJID {
					queries++
				}
			}))
		a := w.join(aliceJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		b := w.join(bobJID, xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		b.h.Listen()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := a.h.Dial(ctx, b.addr)
		cancel()
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 5120, a.h.ChunkSize())

		x, y, err := dialAccept(t, a, b)
		require.NoError(t, err)
		require.Equal(t, 2880, a.h.ChunkSize())
		x.Close()
		y.Close()
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 2, queries)
	})
}
