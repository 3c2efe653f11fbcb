package xtls_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	xstanza "github.com/xmppxtls/xtls/stanza"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// A reconnect to the same peer resumes the TLS session (no full handshake),
// and State says so; trust is decided again all the same.
func TestResumption(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		c1, c2, err := dialAccept(t, a, b)
		require.NoError(t, err)
		require.False(t, c1.State().Resumed)
		exchange(t, c1, c2, 1024) // the client reads, and so takes in the session ticket
		c1.Close()
		c2.Close()
		c1, c2, err = dialAccept(t, a, b)
		require.NoError(t, err)
		require.True(t, c1.State().Resumed)
		require.True(t, c2.State().Resumed)
		require.Equal(t, xtls.TrustPinned, c1.State().Trust)
		require.Equal(t, xtls.TrustPinned, c2.State().Trust)
		require.NotNil(t, c1.State().PeerCertificate())
		exchange(t, c1, c2, 1024)
		c1.Close()
		c2.Close()
	})
}

// 100 tunnels at once between two sessions, each moving 1 MiB (half each
// way) correctly; a backlog of 64 makes the others wait and retry. Bob
// lets one peer take the whole backlog: by default a peer gets 16
// handshakes at a time (Config.MaxHandshakesPerPeer).
func TestManyTunnels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore(),
			MaxPending: 64, MaxPendingPerPeer: 64, MaxHandshakesPerPeer: 64})
		ln := b.h.Listen()
		const n = 100
		accepted := make(chan net.Conn, n)
		go func() {
			for range n {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		var wg sync.WaitGroup
		peers := sync.Map{}
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := a.h.Dial(context.Background(), b.addr)
				require.NoError(t, err)
				peers.Store(c.State().SID, c)
			}()
		}
		wg.Wait()
		for range n {
			c2 := (<-accepted).(*xtls.Conn)
			v, ok := peers.Load(c2.State().SID)
			require.True(t, ok)
			c1 := v.(*xtls.Conn)
			wg.Add(1)
			go func() {
				defer wg.Done()
				exchange(t, c1, c2, 512<<10)
				c1.Close()
				c2.Close()
			}()
		}
		wg.Wait()
	})
}

// makeTLSPipe returns both ends of a TLS tunnel over a fresh network.
func makeTLSPipe() (c1, c2 net.Conn, stop func(), err error) {
	n := xtlstest.NewNetwork()
	w := &world{n: n}
	a, err := w.node(aliceJID)
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := w.node(bobJID)
	if err != nil {
		return nil, nil, nil, err
	}
	ln := b.h.Listen()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	x, err := a.h.Dial(context.Background(), b.addr)
	if err != nil {
		return nil, nil, nil, err
	}
	y := <-acc
	stop = func() {
		x.Close()
		y.Close()
		// A subtest may return while its own Close still waits for the
		// peer (BasicIO does): let both tunnels end before the handlers go,
		// or that Close fails with "endpoint closed".
		for _, c := range []*xtls.Conn{x, y.(*xtls.Conn)} {
			select {
			case <-c.Tunnel().Done():
			case <-time.After(time.Minute):
			}
		}
		w.close()
	}
	return x, y, stop, nil
}

// TLS over the tunnel passes the subtests of x/net's nettest.TestConn that
// crypto/tls passes over TCP: PastTimeout, FutureTimeout and
// ConcurrentMethods fail for TLS over TCP too, because a TLS write timeout is
// permanent by design. The suite runs in a child process of this test
// binary, selecting those subtests by name.
func TestTLSNetConn(t *testing.T) {
	if os.Getenv("XTLS_NETTEST_CHILD") == "1" {
		nettest.TestConn(t, makeTLSPipe)
		return
	}
	const subset = "^TestTLSNetConn$/^(BasicIO|PingPong|RacyRead|RacyWrite|ReadTimeout|WriteTimeout|PresentTimeout|CloseTimeout)$"
	cmd := exec.Command(os.Args[0], "-test.run="+subset, "-test.v", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), "XTLS_NETTEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, name := range []string{"BasicIO", "PingPong", "RacyRead", "RacyWrite", "ReadTimeout", "WriteTimeout", "PresentTimeout", "CloseTimeout"} {
		require.Contains(t, string(out), "--- PASS: TestTLSNetConn/"+name+" ", "%s", out)
	}
}

// An abort says why, and the far end says it in words.
func TestAbortSaysWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		x, y, err := dialAccept(t, a, b)
		require.NoError(t, err)
		x.Abort(xstanza.ReasonShutdown)
		_, err = y.Read(make([]byte, 1))
		var ae *transport.AbortError
		require.ErrorAs(t, err, &ae)
		require.True(t, ae.Remote)
		require.Equal(t, xstanza.ReasonShutdown, ae.Why)
		require.Contains(t, err.Error(), "it is shutting down")
		y.Close()
	})
}
