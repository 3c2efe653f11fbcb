package xtls_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

// The Handler's transport flushes the delayed ACK of the session's socket
// each time an answer to one of its IQs arrives (tested in transport),
// unless Config.NoQuickAck says to leave the socket alone; either field
// turns it off.
func TestHandlerQuickAck(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  xtls.Config
		want bool
	}{
		{"default", xtls.Config{}, false},
		{"NoQuickAck", xtls.Config{NoQuickAck: true}, true},
		{"transport's NoQuickAck", xtls.Config{Transport: &transport.Config{NoQuickAck: true}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.cfg.Pins, tc.cfg.TrustOnFirstUse = xtls.NewMemPinStore(), true
			a := w.join(aliceJID, tc.cfg)
			require.Equal(t, tc.want, a.h.TransportConfig().NoQuickAck)
		})
	}
}
