package integration

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/integration/harness"
)

// A tunnel through each server: TLS 1.3 with certificates on both ends, the
// chunk size chosen for the server, then 64 MiB each way at once, checked
// with SHA-256.
func TestTransfer(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *harness.Server) {
		alice := connect(t, srv, "alice", partyOpt{})
		bob := connect(t, srv, "bob", partyOpt{})
		c1, c2 := tunnel(t, alice, bob)
		s1, s2 := c1.State(), c2.State()
		require.Equal(t, uint16(tls.VersionTLS13), s1.Version)
		require.Equal(t, tls.X25519MLKEM768, s1.CurveID)
		require.Equal(t, bob.addr, s1.Peer)
		require.Equal(t, alice.addr, s2.Peer)
		require.NotNil(t, s1.PeerCertificate())
		require.NotNil(t, s2.PeerCertificate())
		// Each end asked its server's software (disco#info) before the
		// handshake ended and chose its chunk size from it.
		want := map[string]int{"prosody": 2880, "ejabberd": 16384}[srv.Kind()]
		require.Equal(t, want, alice.h.ChunkSize(), "alice's chunk size on %s", srv.Kind())
		require.Equal(t, want, bob.h.ChunkSize(), "bob's chunk size on %s", srv.Kind())
		began := time.Now()
		exchange(t, c1, c2, transferSize)
		el := time.Since(began)
		t.Logf("%s: %d MiB each way in %v (%.1f MB/s of payload in total)", srv.Kind(), transferSize>>20, el.Round(time.Millisecond), 2*float64(transferSize)/el.Seconds()/1e6)
		require.NoError(t, c1.Close())
		require.NoError(t, c2.Close())
	})
}

const transferSize = 64 << 20
