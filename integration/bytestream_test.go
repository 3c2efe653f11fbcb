package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	mrand "math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/internal/s5b"
)

// A mediated SOCKS5 bytestream (XEP-0065) through each server's own proxy,
// with the servers' stock client limits on: alice finds the proxy in her
// server's disco#items and asks it for its streamhost; bob (the target) and
// then alice (the requester) connect to it with SOCKS5; alice activates the
// stream. Then bytes flow both ways in turns (1 MiB each way in 4 KiB
// messages), and 4 MiB flow from alice to bob, who reads them to the end of
// the stream when alice closes it, all exactly. The proxy is not subject to
// the c2s limits: the 4 MiB move at more than ten times the rate at which the
// server reads a client (they would take minutes if they were shaped).
//
// The turns and the close are how the proxies are used here because of a
// Prosody 0.12 bug: proxy65 relays with net.server_epoll's link(), which
// pauses the reading side after each 4096-byte read and resumes it when the
// other side drains, without looking at what LuaSocket has already buffered.
// After a burst of more than 4 KiB, up to 4096 bytes of its tail stay in
// Prosody until the sender sends again or closes (measured: 4 MiB sent,
// 4190208 relayed; one more byte released the rest). ejabberd relays every
// byte.
func TestProxy65Bytestream(t *testing.T) {
	eachStockServer(t, func(t *testing.T, srv *harness.Server) {
		proxy, ok := srv.Proxy65()
		require.True(t, ok, "the server runs no proxy")
		alice := connect(t, srv, "alice", partyOpt{noXTLS: true})
		bob := connect(t, srv, "bob", partyOpt{noXTLS: true})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()

		proxies, err := s5b.FindProxies(ctx, alice.s, alice.addr.Domain())
		require.NoError(t, err)
		require.Len(t, proxies, 1, "proxies in %s's disco#items: %v", srv.Domain(), proxies)
		require.True(t, proxies[0].Equal(proxy.JID), "found %s, want %s", proxies[0], proxy.JID)
		hosts, err := s5b.GetStreamHosts(ctx, alice.s, proxies[0])
		require.NoError(t, err)
		require.Len(t, hosts, 1)
		require.Equal(t, proxy.Addr(), hosts[0].Addr())
		// ejabberd names its streamhost with a resource.
		require.True(t, hosts[0].JID.Bare().Equal(proxy.JID), "streamhost %s", hosts[0].JID)

		sid := make([]byte, 8)
		rand.Read(sid)
		sidText := hex.EncodeToString(sid)
		target, err := s5b.Dial(ctx, hosts[0], sidText, alice.addr, bob.addr)
		require.NoError(t, err)
		defer target.Close()
		requester, err := s5b.Dial(ctx, hosts[0], sidText, alice.addr, bob.addr)
		require.NoError(t, err)
		defer requester.Close()
		require.NoError(t, s5b.Activate(ctx, alice.s, proxies[0], sidText, bob.addr))
		deadline, _ := ctx.Deadline() // a stuck proxy fails the test
		target.SetDeadline(deadline)
		requester.SetDeadline(deadline)

		// Turns: each side sends a message only after it has read the
		// other's, so no more than 4 KiB wait at the proxy at once.
		msg := make([]byte, 4096)
		turns := make(chan error, 1)
		go func() {
			turns <- func() error {
				buf := make([]byte, len(msg))
				for range 256 {
					if _, err := io.ReadFull(target, buf); err != nil {
						return err
					}
					if _, err := target.Write(buf); err != nil { // back as it came
						return err
					}
				}
				return nil
			}()
		}()
		got := make([]byte, len(msg))
		for i := range 256 {
			rand.Read(msg)
			_, err := requester.Write(msg)
			require.NoError(t, err)
			_, err = io.ReadFull(requester, got)
			require.NoError(t, err, "turn %d", i)
			require.True(t, bytes.Equal(msg, got), "turn %d came back changed", i)
		}
		require.NoError(t, <-turns)

		const n = 4 << 20
		want, sum := sha256.New(), sha256.New()
		began := time.Now()
		wrote := make(chan error, 1)
		go func() {
			_, err := io.Copy(requester, io.TeeReader(io.LimitReader(mrand.NewChaCha8([32]byte{9}), n), want))
			if err == nil {
				err = requester.(*net.TCPConn).CloseWrite()
			}
			wrote <- err
		}()
		read, err := io.Copy(sum, target)
		elapsed := time.Since(began)
		require.NoError(t, err)
		require.NoError(t, <-wrote)
		require.Equal(t, int64(n), read)
		require.Equal(t, want.Sum(nil), sum.Sum(nil), "SHA-256 of the bytes through the proxy")
		rate := n / elapsed.Seconds()
		t.Logf("%s: %d MiB through %s in %v (%.1f MB/s; clients are read at %d B/s)",
			srv.Kind(), n>>20, proxy.Addr(), elapsed.Round(time.Millisecond), rate/1e6, srv.C2SRate())
		require.Greater(t, rate, float64(10*srv.C2SRate()), "the proxy is as slow as the shaped c2s path")
	})
}
