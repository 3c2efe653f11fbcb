package integration

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

// ownOpts are the options of a server started for one test.
type ownOpts struct {
	size    int             // stanza size limit (0: the harness's default)
	shaper  *harness.Shaper // c2s shaper, if any
	proxy65 bool            // run the server's SOCKS5 proxy
}

// startOwn starts a server of the given kind for one test, with alice and
// bob.
func startOwn(t *testing.T, kind string, o ownOpts) *harness.Server {
	t.Helper()
	var s *harness.Server
	if kind == "prosody" {
		s = harness.StartProsodyT(t, harness.ProsodyOptions{StanzaSizeLimit: o.size, Shaper: o.shaper, Proxy65: o.proxy65})
	} else {
		s = harness.StartEjabberdT(t, harness.EjabberdOptions{StanzaSizeLimit: o.size, Shaper: o.shaper, Proxy65: o.proxy65})
	}
	for _, u := range []string{"alice", "bob"} {
		harness.AddUserT(t, s, u, password(u))
	}
	return s
}

var kinds = []string{"prosody", "ejabberd"}

// The server stops in the middle of a transfer: both ends fail cleanly and
// promptly, nothing is left running, and after a restart a new session and
// tunnel work.
func TestServerStops(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := startOwn(t, kind, ownOpts{})
			t.Run("stop", func(t *testing.T) {
				noLeaks(t)
				alice := connect(t, srv, "alice", partyOpt{})
				bob := connect(t, srv, "bob", partyOpt{})
				c1, c2 := tunnel(t, alice, bob)
				errs := make(chan error, 4)
				pump := func(f func() error) { go func() { errs <- f() }() }
				pump(func() error { _, err := io.Copy(c1, zeros{}); return err })
				pump(func() error { _, err := io.Copy(c2, zeros{}); return err })
				pump(func() error { _, err := io.Copy(io.Discard, c1); return err })
				pump(func() error { _, err := io.Copy(io.Discard, c2); return err })
				_, err := io.ReadFull(c2, make([]byte, 1<<20)) // the transfer is under way
				require.NoError(t, err)
				require.NoError(t, srv.Stop())
				deadline := time.After(30 * time.Second)
				for range 4 {
					select {
					case err := <-errs:
						require.Error(t, err)
						require.True(t, errors.Is(err, transport.ErrSessionClosed) || errors.Is(err, xtls.ErrTruncated), "%v", err)
					case <-deadline:
						t.Fatal("a tunnel end did not fail after the server stopped")
					}
				}
				c1.Close()
				c2.Close()
				alice.close()
				bob.close()
			})
			require.NoError(t, srv.Start(t.Context()))
			alice := connect(t, srv, "alice", partyOpt{})
			bob := connect(t, srv, "bob", partyOpt{})
			c1, c2 := tunnel(t, alice, bob)
			exchange(t, c1, c2, 256<<10)
			c1.Close()
			c2.Close()
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// A server configured as Debian ships ejabberd (262144-byte stanzas, a
// 3000 B/s shaper on each client): the transfer completes, slower, instead
// of failing. Data elements stay far below the stanza limit.
func TestShapedServer(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := startOwn(t, kind, ownOpts{size: harness.DebianStanzaSizeLimit, shaper: &harness.DebianC2SShaper})
			alice := connect(t, srv, "alice", partyOpt{})
			bob := connect(t, srv, "bob", partyOpt{})
			began := time.Now()
			c1, c2 := tunnel(t, alice, bob)
			t.Logf("%s: handshake through the shaper took %v", kind, time.Since(began).Round(time.Millisecond))
			began = time.Now()
			exchange(t, c1, c2, 24<<10)
			t.Logf("%s: 24 KiB each way through the shaper took %v", kind, time.Since(began).Round(time.Millisecond))
			require.LessOrEqual(t, c1.Tunnel().PeerBlockSize(), 65535)
			began = time.Now()
			c1.Close()
			c2.Close()
			t.Logf("%s: closing took %v", kind, time.Since(began).Round(time.Millisecond))
		})
	}
}

// A user who forces data elements over the server's stanza size limit gets
// an error that says what happened: the session ended, with the stream error
// (or what mellium made of it) and the size of the stanza that was too big.
func TestOversizedStanza(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := startOwn(t, kind, ownOpts{size: 32768})
			big := partyOpt{cfg: xtls.Config{Transport: &transport.Config{ChunkSize: 65535}}}
			alice := connect(t, srv, "alice", big)
			bob := connect(t, srv, "bob", big)
			c1, c2 := tunnel(t, alice, bob)
			go io.Copy(io.Discard, c2)
			var werr error
			for werr == nil {
				_, werr = c1.Write(make([]byte, 60000))
			}
			t.Logf("%s: %v", kind, werr)
			require.ErrorIs(t, werr, transport.ErrSessionClosed)
			require.Contains(t, werr.Error(), "the largest stanza sent was about")
			c2.Close()
		})
	}
}
