package transport

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// An Endpoint flushes the delayed ACK of its session's socket each time an
// answer to one of its IQs arrives, on both ends of a tunnel, unless
// Config.NoQuickAck says to leave the socket alone.
func TestQuickAckOnAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		noQuickAck bool
	}{
		{"default", false},
		{"NoQuickAck", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				asked := 0
				acks := map[net.Conn]int{}
				old := ackNow
				ackNow = func(c net.Conn) func() {
					mu.Lock()
					defer mu.Unlock()
					asked++
					return func() {
						mu.Lock()
						defer mu.Unlock()
						acks[c]++
					}
				}
				defer func() { ackNow = old }()

				n := xtlstest.NewNetwork()
				defer n.Close()
				cfg := &Config{NoQuickAck: tc.noQuickAck}
				var sessions []*xmpp.Session
				var eps []*Endpoint
				served := make(chan struct{}, 2)
				accepted := make(chan *Conn, 1)
				for _, addr := range []string{aliceJID, bobJID} {
					s, err := n.Session(context.Background(), jid.MustParse(addr))
					require.NoError(t, err)
					e := NewEndpoint(s, cfg)
					e.SetAcceptFunc(func(c *Conn) error { accepted <- c; return nil })
					go func() {
						e.SessionEnded(s.Serve(mux.New(stanza.NSClient, e.Handle())))
						served <- struct{}{}
					}()
					sessions, eps = append(sessions, s), append(eps, e)
				}
				c1, err := eps[0].Dial(context.Background(), sessions[1].LocalAddr(), "")
				require.NoError(t, err)
				c2 := <-accepted
				_, err = c1.Write([]byte("hello"))
				require.NoError(t, err)
				buf := make([]byte, 5)
				_, err = io.ReadFull(c2, buf)
				require.NoError(t, err)
				_, err = c2.Write([]byte("world"))
				require.NoError(t, err)
				_, err = io.ReadFull(c1, buf)
				require.NoError(t, err)
				require.NoError(t, c1.Close())
				_, err = io.ReadAll(c2)
				require.NoError(t, err)
				require.NoError(t, c2.Close())
				for _, e := range eps {
					e.Close()
				}
				n.Close()
				<-served
				<-served

				mu.Lock()
				defer mu.Unlock()
				if tc.noQuickAck {
					require.Zero(t, asked)
					return
				}
				require.Equal(t, 2, asked)
				for _, s := range sessions {
					// At least the answers to its data and its close.
					require.GreaterOrEqual(t, acks[s.Conn()], 2, s.LocalAddr())
				}
			})
		})
	}
}
