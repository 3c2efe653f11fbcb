package xtls_test

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/xtls"
)

// A Handler flushes the delayed ACK of its session's socket each time a
// response to one of its IQs arrives, on both ends of a tunnel, unless
// Config.NoQuickAck says to leave the socket alone.
func TestHandlerQuickAck(t *testing.T) {
	for _, tc := range []struct {
		name       string
		noQuickAck bool
	}{
		{"default", false},
		{"NoQuickAck", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var asked atomic.Int32
				acks := make(map[net.Conn]*atomic.Int64)
				defer xtls.SetAckFor(func(c net.Conn) func() {
					asked.Add(1)
					n := new(atomic.Int64)
					acks[c] = n
					return func() { n.Add(1) }
				})()
				w := newWorld(t)
				cfg := xtls.Config{Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true, NoQuickAck: tc.noQuickAck}
				a := w.join(aliceJID, cfg)
				b := w.join(bobJID, cfg)
				c1, c2, err := dialAccept(t, a, b)
				require.NoError(t, err)
				_, err = c1.Write([]byte("hello"))
				require.NoError(t, err)
				buf := make([]byte, 5)
				_, err = io.ReadFull(c2, buf)
				require.NoError(t, err)
				require.NoError(t, c1.Close())
				_, err = io.ReadAll(c2)
				require.NoError(t, err)
				require.NoError(t, c2.Close())

				if tc.noQuickAck {
					require.Zero(t, asked.Load())
					return
				}
				require.Equal(t, int32(2), asked.Load())
				for _, n := range []*node{a, b} {
					ack := acks[n.s.Conn()]
					require.NotNil(t, ack, n.addr)
					// At least the responses to its TLS flight and close.
					require.GreaterOrEqual(t, ack.Load(), int64(2), n.addr)
				}
			})
		})
	}
}
