package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/xtls"
)

// killProxySockets destroys every TCP socket to or from the proxy's port
// (ss -K, SOCK_DESTROY; root): the proxy's accepted connections and the
// clients' connections to it end at once, with a reset, as when the
// proxy's process dies, while the server's XMPP sessions, on other
// sockets, go on. It returns how many sockets it found.
func killProxySockets(t *testing.T, proxy harness.Proxy65) int {
	t.Helper()
	port := fmt.Sprintf(":%d", proxy.Port)
	out, err := exec.Command("ss", "-K", "-H", "-t", "-n", "(", "sport", "=", port, "or", "dport", "=", port, ")").CombinedOutput()
	require.NoError(t, err, "ss -K: %s", out)
	n := 0
	for _, b := range out {
		if b == '\n' {
			n++
		}
	}
	return n
}

// The server's proxy dies in the middle of a transfer that was moved onto
// it: the tunnel notices, goes back to IQs by itself and finishes there,
// with every byte exact and no new handshake; the application sees no
// error. The servers run without client limits here, so that what was in
// flight on the proxy crosses the IQ path again in seconds (with the
// stock limits it would take hours: xtls/TestBytestreamProxyCuts covers
// the cut at any point, in memory).
func TestProxyKilledMidTransfer(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			srv := startOwn(t, kind, ownOpts{proxy65: true})
			proxy, ok := srv.Proxy65()
			require.True(t, ok)
			cfg := xtls.Config{Bytestreams: xtls.BytestreamOnRequest}
			alice := connect(t, srv, "alice", partyOpt{cfg: cfg})
			bob := connect(t, srv, "bob", partyOpt{cfg: cfg})
			c1, c2 := tunnel(t, alice, bob)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			require.NoError(t, c1.MoveToBytestream(ctx))
			deadline := time.Now().Add(3 * time.Minute)
			c1.SetDeadline(deadline)
			c2.SetDeadline(deadline)

			const n, before = 24 << 20, 8 << 20
			want, got := sha256.New(), sha256.New()
			werr := make(chan error, 1)
			go func() {
				src := io.LimitReader(rand.NewChaCha8([32]byte{9}), n)
				_, err := io.Copy(c1, io.TeeReader(src, want))
				if err == nil {
					err = c1.CloseWrite()
				}
				werr <- err
			}()
			_, err := io.CopyN(got, c2, before)
			require.NoError(t, err)
			require.True(t, c2.Path().Bytestream)
			require.Positive(t, killProxySockets(t, proxy), "no socket of the proxy found")
			m, err := io.Copy(got, c2)
			require.NoError(t, err)
			require.NoError(t, <-werr)
			require.Equal(t, int64(n), before+m)
			require.Equal(t, want.Sum(nil), got.Sum(nil))

			p1, p2 := c1.Path(), c2.Path()
			t.Logf("%s: alice %+v, bob %+v", kind, p1, p2)
			require.False(t, p1.Bytestream)
			require.False(t, p2.Bytestream)
			require.Equal(t, 1, p1.Moves)
			require.Equal(t, 1, p1.Fallbacks)
			require.Less(t, p2.ReceivedOnBytestream, int64(n), "all of it came through the proxy")
			require.NoError(t, c1.Close())
			require.NoError(t, c2.Close())
		})
	}
}
