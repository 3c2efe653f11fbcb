package integration

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

// A pure reader learns that its writer is gone: bob sends alice 16 KiB and
// then his client dies without a word in the tunnel (its TCP connection is
// cut); alice, who only reads and so never sends anything that could fail,
// gets ErrPeerGone from Read within her keep-alive bound (KeepAlive +
// KeepAliveTimeout, here 1 s + 2 s), because her idle tunnel asks whether
// bob is still there and the server answers that he is not. Before
// keep-alive existed her Read blocked for good.
func TestReaderNoticesKilledSender(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *harness.Server) {
		const keepAlive, keepAliveTimeout = time.Second, 2 * time.Second
		alice := connect(t, srv, "alice", partyOpt{cfg: xtls.Config{Transport: &transport.Config{
			KeepAlive: keepAlive, KeepAliveTimeout: keepAliveTimeout,
		}}})
		bob := connect(t, srv, "bob", partyOpt{})
		ca, cb := tunnel(t, alice, bob)
		defer ca.Close()
		const n = 16 << 10 // less than half the window: no credit is due after it
		go func() { _, _ = cb.Write(make([]byte, n)) }()
		_, err := io.ReadFull(ca, make([]byte, n))
		require.NoError(t, err)

		bob.s.Conn().Close() // the process dies: no close, no abort
		start := time.Now()
		readErr := make(chan error, 1)
		go func() {
			_, err := ca.Read(make([]byte, 1))
			readErr <- err
		}()
		select {
		case err := <-readErr:
			took := time.Since(start)
			t.Logf("%s: after %v: %v", srv.Kind(), took.Round(time.Millisecond), err)
			require.ErrorIs(t, err, transport.ErrPeerGone)
			// The bound plus the server's time to answer the probe.
			require.Less(t, took, keepAlive+keepAliveTimeout+10*time.Second)
		case <-time.After(30 * time.Second):
			t.Fatal("alice's Read still blocked 30 s after bob's client died")
		}
	})
}
