package integration

import (
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/integration/harness"
)

// A file through servers as Debian ships them (their client limits on:
// 10 kB/s and 3000 B/s): the tunnel starts on IQs, its first large Write
// waits for the throttled path, so it moves by itself onto the server's
// own SOCKS5 proxy (XEP-0065: Prosody's proxy65, ejabberd's mod_proxy65),
// which the limits do not throttle; 32 MiB arrive exact, all but the
// first few kilobytes through the proxy, with the same TLS session. Over
// IQs alone they would take about an hour and three hours.
func TestTransferOverServerProxy(t *testing.T) {
	eachStockServer(t, func(t *testing.T, srv *harness.Server) {
		alice := connect(t, srv, "alice", partyOpt{})
		bob := connect(t, srv, "bob", partyOpt{})
		c1, c2 := tunnel(t, alice, bob)
		const n = 32 << 20
		want, got := sha256.New(), sha256.New()
		werr := make(chan error, 1)
		go func() {
			src := io.LimitReader(rand.NewChaCha8([32]byte{7}), n)
			_, err := io.Copy(c1, io.TeeReader(src, want))
			if err == nil {
				err = c1.CloseWrite()
			}
			werr <- err
		}()
		m, err := io.Copy(got, c2)
		require.NoError(t, err)
		require.NoError(t, <-werr)
		require.Equal(t, int64(n), m)
		require.Equal(t, want.Sum(nil), got.Sum(nil))
		p1, p2 := c1.Path(), c2.Path()
		t.Logf("%s: alice %+v, bob %+v", srv.Kind(), p1, p2)
		proxy, _ := srv.Proxy65()
		require.Equal(t, 1, p1.Moves)
		require.Zero(t, p1.Fallbacks)
		require.True(t, p1.Proxy.Bare().Equal(proxy.JID.Bare()), "through %s", p1.Proxy)
		require.Greater(t, p2.ReceivedOnBytestream, int64(n-(1<<20)))
		require.NoError(t, c1.Close())
		require.NoError(t, c2.Close())
	})
}
