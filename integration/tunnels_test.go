package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

// 50 tunnels at once between the same two clients.
func TestFiftyTunnels(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *harness.Server) {
		alice := connect(t, srv, "alice", partyOpt{})
		bob := connect(t, srv, "bob", partyOpt{})
		ln := bob.h.Listen()
		const n = 50
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
		dialed := make(map[string]*xtls.Conn)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				c, err := alice.h.Dial(ctx, bob.addr)
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				dialed[c.State().SID] = c
				mu.Unlock()
			}()
		}
		wg.Wait()
		require.Len(t, dialed, n)
		for range n {
			c2 := (<-accepted).(*xtls.Conn)
			c1 := dialed[c2.State().SID]
			require.NotNil(t, c1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				exchange(t, c1, c2, 128<<10)
				c1.Close()
				c2.Close()
			}()
		}
		wg.Wait()
	})
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// Ten clients, each tunnelling to every other one at once.
func TestTenClientsMesh(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *harness.Server) {
		names := users[:10]
		ps := make([]*party, len(names))
		for i, u := range names {
			ps[i] = connect(t, srv, u, partyOpt{})
			ps[i].h.Listen()
		}
		var wg sync.WaitGroup
		for i := range ps {
			// Each accepts the 9 tunnels the others open and echoes.
			ln := ps[i].h.Listen()
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range len(ps) - 1 {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer c.Close()
						io.Copy(c, c)
					}()
				}
			}()
		}
		var dials sync.WaitGroup
		for i := range ps {
			for j := range ps {
				if i == j {
					continue
				}
				dials.Add(1)
				go func() {
					defer dials.Done()
					ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
					defer cancel()
					c, err := ps[i].h.Dial(ctx, ps[j].addr)
					if !assertNoError(t, err) {
						return
					}
					defer c.Close()
					msg := []byte(fmt.Sprintf("%s to %s", names[i], names[j]))
					if _, err := c.Write(msg); !assertNoError(t, err) {
						return
					}
					if !assertNoError(t, c.CloseWrite()) {
						return
					}
					got, err := io.ReadAll(c)
					if assertNoError(t, err) && string(got) != string(msg) {
						t.Errorf("echo of %q: %q", msg, got)
					}
				}()
			}
		}
		dials.Wait()
		wg.Wait()
	})
}

// The responder's client disconnects in the middle of a transfer: the
// initiator's Read and Write fail soon, with an error that wraps what the
// server said on the departed peer's behalf.
func TestPeerDisconnects(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *harness.Server) {
		alice := connect(t, srv, "alice", partyOpt{})
		bob := connect(t, srv, "bob", partyOpt{})
		c1, c2 := tunnel(t, alice, bob)
		exchange(t, c1, c2, 64<<10)
		writeErr := make(chan error, 1)
		go func() {
			buf := make([]byte, 32<<10)
			for {
				if _, err := c1.Write(buf); err != nil {
					writeErr <- err
					return
				}
			}
		}()
		readErr := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, c1)
			readErr <- err
		}()
		// Bob reads a little, then his client goes away.
		_, err := io.ReadFull(c2, make([]byte, 100<<10))
		require.NoError(t, err)
		bob.s.Conn().Close()
		deadline := time.After(60 * time.Second)
		for _, ch := range []chan error{writeErr, readErr} {
			select {
			case err := <-ch:
				t.Logf("%s: %v", srv.Kind(), err)
				require.Error(t, err)
				var pe *transport.PeerError
				require.True(t, errors.As(err, &pe) || errors.Is(err, xtls.ErrTruncated), "%v", err)
				if pe != nil {
					require.Contains(t, []stanza.Condition{stanza.ServiceUnavailable, stanza.RecipientUnavailable, stanza.ItemNotFound}, pe.Err.Condition)
				}
			case <-deadline:
				t.Fatal("alice's tunnel did not fail after bob went away")
			}
		}
		c1.Close()
	})
}

// A peer without the XTLS handler answers ErrNotSupported; an offline full
// JID gives ErrPeerUnavailable.
func TestNotSupportedAndOffline(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *harness.Server) {
		alice := connect(t, srv, "alice", partyOpt{})
		plain := connect(t, srv, "carol", partyOpt{noXTLS: true})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := alice.h.Dial(ctx, plain.addr)
		require.ErrorIs(t, err, xtls.ErrNotSupported)
		t.Logf("%s: %v", srv.Kind(), err)

		gone := jid.MustParse("dave@" + srv.Domain() + "/nowhere")
		_, err = alice.h.Dial(ctx, gone)
		require.ErrorIs(t, err, xtls.ErrPeerUnavailable)
		t.Logf("%s: %v", srv.Kind(), err)
	})
}
