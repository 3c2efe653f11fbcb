package xtls_test

import (
	"context"
	"encoding/xml"
	"strconv"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// A server that cannot reach the peer's server answers the start with
// remote-server-not-found (at once) or remote-server-timeout (of type wait:
// the transport tries again first); either way the peer is unavailable,
// and the stanza error is kept.
func TestDialUnreachableServer(t *testing.T) {
	for i, se := range []stanza.Error{
		0: {Type: stanza.Cancel, Condition: stanza.RemoteServerNotFound},
		1: {Type: stanza.Wait, Condition: stanza.RemoteServerTimeout},
		2: {Type: stanza.Cancel, Condition: stanza.RemoteServerTimeout},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
				far := jid.MustParse("bob@far.example/b")
				// The network delivers what is addressed to bob to a
				// session that answers as bob's server would.
				s, err := w.n.Session(context.Background(), far)
				require.NoError(t, err)
				bounce := mux.IQFunc(stanza.SetIQ, xml.Name{Space: xtls.NS}, func(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
					_, err := xmlstream.Copy(t, iq.Error(se))
					return err
				})
				served := make(chan error, 1)
				go func() { served <- s.Serve(mux.New(stanza.NSClient, bounce)) }()
				t.Cleanup(func() { s.Close(); <-served })

				_, err = a.h.Dial(context.Background(), far)
				require.ErrorIs(t, err, xtls.ErrPeerUnavailable)
				require.ErrorIs(t, err, stanza.Error{Condition: se.Condition})
				require.NotErrorIs(t, err, xtls.ErrNotSupported)
			})
		})
	}
}
