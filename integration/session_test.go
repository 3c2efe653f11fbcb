package integration

import (
	"context"
	"encoding/xml"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/xtls"
)

// An end-to-end session through a real server: messages and IQs both ways
// inside the tunnel, in order, with routing from the tunnel.
func TestEndToEndSession(t *testing.T) {
	eachServer(t, func(t *testing.T, srv *harness.Server) {
		alice := connect(t, srv, "alice", partyOpt{})
		bob := connect(t, srv, "bob", partyOpt{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		const n = 500
		got := make(chan string, n)
		inbox := mux.MessageFunc(stanza.ChatMessage, xml.Name{Local: "body"}, func(msg stanza.Message, r xmlstream.TokenReadEncoder) error {
			var text []byte
			for tok, err := r.Token(); err == nil; tok, err = r.Token() {
				if c, ok := tok.(xml.CharData); ok {
					text = append(text, c...)
				}
			}
			got <- msg.From.String() + " " + string(text)
			return nil
		})
		accepted := make(chan *xmpp.Session, 1)
		ln := bob.h.Listen() // before the dial: without a Listener it is refused
		go func() {
			s, err := xtls.AcceptSession(ctx, ln)
			if err != nil {
				close(accepted)
				return
			}
			accepted <- s
		}()
		sa, err := xtls.DialSession(ctx, alice.h, bob.addr)
		require.NoError(t, err)
		sb, ok := <-accepted
		require.True(t, ok)
		served := make(chan error, 2)
		go func() { served <- sa.Serve(mux.New(stanza.NSClient, ping.Handle())) }()
		go func() { served <- sb.Serve(mux.New(stanza.NSClient, ping.Handle(), inbox)) }()
		for i := range n {
			require.NoError(t, sa.Send(ctx, stanza.Message{Type: stanza.ChatMessage}.Wrap(xmlstream.Wrap(
				xmlstream.Token(xml.CharData(fmt.Sprint(i))), xml.StartElement{Name: xml.Name{Local: "body"}}))))
		}
		for i := range n {
			require.Equal(t, fmt.Sprintf("%s %d", alice.addr, i), <-got)
		}
		require.NoError(t, ping.Send(ctx, sa, bob.addr))
		require.NoError(t, ping.Send(ctx, sb, alice.addr))
		require.NoError(t, sa.Close())
		require.NoError(t, <-served)
		require.NoError(t, <-served)
	})
}
