package integration

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/xtls"
)

// Issue 20 through real servers: alice sends bob 8 MiB over one tunnel and,
// a third of the way in, her client's TCP connection to the server is reset
// (only that one: the test sets SO_LINGER to 0 on the socket it dialled and
// closes it, so the kernel sends a RST). Her Serve returns, her Handler hears
// it (SessionEnded) and her tunnel waits (Config.Reattach, default); the
// test logs her in again with a new resource and gives the Handler the new
// session (Reattach). The transfer then completes with every byte exactly
// once (size and SHA-256), over the same tunnel (same Conn, same sid) and
// the one TLS handshake it began with (each end counts the starts it
// receives: one, bob's from the Dial); alice's tunnel counts a
// re-attachment, and bob's follows alice to her new full JID. Bob's own
// session is untouched throughout.
func TestTransferSurvivesReconnect(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *harness.Server) {
		noLeaks(t)
		var starts atomic.Int32 // tunnels opened to alice or bob: one TLS handshake each
		cfg := func() xtls.Config {
			return xtls.Config{AcceptPeer: func(jid.JID) bool { starts.Add(1); return true }, Reattach: xtls.DefaultReattach}
		}
		var aliceTCP *net.TCPConn
		alice := connect(t, srv, "alice", partyOpt{cfg: cfg(), wrap: func(c net.Conn) net.Conn {
			aliceTCP = c.(*net.TCPConn)
			return c
		}})
		bob := connect(t, srv, "bob", partyOpt{cfg: cfg()})
		c1, c2 := tunnel(t, alice, bob)
		defer c1.Close()
		defer c2.Close()
		sid, oldAlice := c2.State().SID, alice.addr
		require.Equal(t, oldAlice, c2.State().Peer)

		const size = 8 << 20
		want := sha256.New()
		werr := make(chan error, 1)
		go func() {
			src := io.LimitReader(rand.NewChaCha8([32]byte{20}), size)
			_, err := io.Copy(c1, io.TeeReader(src, want))
			if err == nil {
				err = c1.Close()
			}
			werr <- err
		}()
		// Bob reads to the end of the stream; he stops once at a third of
		// it until the test has taken note, so the reset falls mid-transfer.
		var got atomic.Int64
		h := sha256.New()
		rerr := make(chan error, 1)
		third := make(chan struct{})
		go func() {
			buf := make([]byte, 64<<10)
			marked := false
			for {
				n, err := c2.Read(buf)
				h.Write(buf[:n])
				if k := got.Add(int64(n)); !marked && k >= size/3 {
					marked = true
					select {
					case third <- struct{}{}:
					case <-t.Context().Done():
					}
				}
				if err != nil {
					rerr <- err
					return
				}
			}
		}()
		began := time.Now()
		awaitT(t, third, time.Minute, "bob reading a third of the transfer")

		reset := time.Now()
		require.NoError(t, aliceTCP.SetLinger(0))
		require.NoError(t, aliceTCP.Close()) // RST: no close_notify, no </stream:stream>
		awaitT(t, alice.done, 30*time.Second, "alice's Serve returning after the reset")
		t.Logf("%s: alice's Serve returned %v after %v: %v", srv.Kind(), oldAlice, time.Since(reset).Round(time.Millisecond), alice.err)

		alice.rejoin(t, srv, "alice", "back")
		require.NotEqual(t, oldAlice, alice.addr)
		rejoined := time.Now()
		t.Logf("%s: alice is back as %v after %v", srv.Kind(), alice.addr, rejoined.Sub(reset).Round(time.Millisecond))

		require.ErrorIs(t, awaitT(t, rerr, time.Minute, "bob reading to the end"), io.EOF)
		require.NoError(t, awaitT(t, werr, time.Minute, "alice's writes and close"))
		t.Logf("%s: %d MiB in %v, %v of it after alice was back; alice's data sent again: %d of %d",
			srv.Kind(), size>>20, time.Since(began).Round(time.Millisecond), time.Since(rejoined).Round(time.Millisecond),
			alice.h.TransportStats().Retransmits, alice.h.TransportStats().DataSent)
		require.Equal(t, int64(size), got.Load(), "bytes bob read")
		require.Equal(t, want.Sum(nil), h.Sum(nil), "SHA-256 of what bob read")

		require.Equal(t, int32(1), starts.Load(), "one tunnel opened, one TLS handshake")
		require.Equal(t, sid, c1.State().SID)
		require.Equal(t, sid, c2.State().SID)
		require.GreaterOrEqual(t, c1.Reattachments(), 1, "alice's re-attachments")
		require.GreaterOrEqual(t, c2.Reattachments(), 1, "bob's re-attachments")
		require.Equal(t, alice.addr, c1.State().Local, "alice's tunnel's own JID")
		require.Equal(t, alice.addr, c2.State().Peer, "bob's tunnel's peer")
		require.Zero(t, c1.Path().Moves, "the tunnel stayed on IQs (the shared servers run no proxy)")
		select {
		case <-bob.done:
			t.Fatalf("bob's session ended: %v", bob.err)
		default:
		}
		require.NoError(t, c2.Close())
	})
}

// rejoin logs p in again as user/resource after its session ended (p.done
// closed), serves the new session as connect does (disco and p's Handler),
// and hands it to p's Handler, whose waiting tunnels go on from there.
func (p *party) rejoin(t *testing.T, srv *harness.Server, user, resource string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := srv.ConnectResource(ctx, user, resource, password(user))
	require.NoError(t, err, "%s", srv.Log())
	done := make(chan struct{})
	p.s, p.addr, p.done = s, s.LocalAddr(), done
	go func() {
		p.err = s.Serve(mux.New(stanza.NSClient, disco.Handle(), p.h.Handle()))
		p.h.SessionEnded(p.err)
		close(done)
	}()
	require.NoError(t, p.h.Reattach(s))
}

// awaitT returns what ch yields, or fails the test after d saying what it
// waited for.
func awaitT[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("still waiting after %v for %s", d, what)
		panic("unreachable")
	}
}
