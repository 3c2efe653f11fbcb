package xtls_test

import (
	"context"
	"encoding/xml"
	"errors"
	"strconv"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// A peer whose key we have pinned is known to speak XTLS: a start it
// answers as a client without XTLS does is a possible downgrade, reported
// as such and never as ErrNotSupported. A peer that does not answer at all
// is unavailable, pinned or not.
func TestDowngrade(t *testing.T) {
	without := func(t *testing.T, w *world) { w.joinWith(bobJID, xtls.Config{}, true) }
	for i, tc := range []struct {
		pinned bool
		peer   func(t *testing.T, w *world)
		want   error
		cond   stanza.Condition
	}{
		0: {true, without, xtls.ErrDowngrade, stanza.ServiceUnavailable},
		1: {true, unimplemented, xtls.ErrDowngrade, stanza.FeatureNotImplemented},
		2: {false, without, xtls.ErrNotSupported, stanza.ServiceUnavailable},
		3: {false, unimplemented, xtls.ErrNotSupported, stanza.FeatureNotImplemented},
		4: {true, func(*testing.T, *world) {}, xtls.ErrPeerUnavailable, stanza.ServiceUnavailable},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				cfg := tofu()
				fp := xtls.SPKIFingerprint(cert(t, bobJID).Leaf)
				if tc.pinned {
					require.NoError(t, cfg.Pins.AddPin(jid.MustParse(bobJID).Bare(), fp))
				}
				a := w.join(aliceJID, cfg)
				tc.peer(t, w)
				_, err := a.h.Dial(context.Background(), jid.MustParse(bobJID))
				require.ErrorIs(t, err, tc.want)
				require.ErrorIs(t, err, stanza.Error{Condition: tc.cond}, "the answer is kept")
				var de *xtls.DowngradeError
				if tc.want != xtls.ErrDowngrade {
					require.NotErrorIs(t, err, xtls.ErrDowngrade)
					require.False(t, errors.As(err, &de))
					return
				}
				require.NotErrorIs(t, err, xtls.ErrNotSupported)
				require.NotErrorIs(t, err, xtls.ErrPeerUnavailable)
				require.ErrorAs(t, err, &de)
				require.Equal(t, bobJID, de.Peer.String())
				require.Equal(t, []xtls.Fingerprint{fp}, de.Pinned)
				require.Contains(t, err.Error(), "a server may be hiding XTLS")
			})
		})
	}
}

// unimplemented connects bob as a client that answers every XTLS request
// feature-not-implemented and serves disco without XTLS.
func unimplemented(t *testing.T, w *world) {
	s, err := w.n.Session(context.Background(), jid.MustParse(bobJID))
	require.NoError(t, err)
	fni := mux.IQFunc(stanza.SetIQ, xml.Name{Space: xtls.NS}, func(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
		_, err := xmlstream.Copy(t, iq.Error(stanza.Error{Type: stanza.Cancel, Condition: stanza.FeatureNotImplemented}))
		return err
	})
	served := make(chan error, 1)
	go func() { served <- s.Serve(mux.New(stanza.NSClient, disco.Handle(), fni)) }()
	t.Cleanup(func() { s.Close(); <-served })
}

// Dial to a bare JID whose resource answers as if it had no XTLS, though
// the peer is pinned and its caps said XTLS, goes on to the next resource
// (authenticated by the same pins) and logs the downgrade; with no other
// resource, the downgrade is the error, not ErrNotSupported.
func TestDialBareDowngrade(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, xtlstest.AllContacts())
		logger, logged := newLogger()
		cfg := tofu()
		cfg.Logger = logger
		a := w.join(aliceJID, cfg)
		announce(t, a, 0)
		claimed := a.h.Caps() // an XTLS client's caps
		real := w.join("bob@example.org/real", tofu())
		listen(t, real)
		announce(t, real, 0)
		synctest.Wait()
		got, err := dialPeer(t, a, "bob@example.org") // pins bob, verifies the caps
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/real", got.String())

		liar := w.joinWith("bob@example.org/liar", xtls.Config{}, true)
		sendCaps(t, liar, claimed) // the latest presence: first in line
		synctest.Wait()
		got, err = dialPeer(t, a, "bob@example.org")
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/real", got.String())
		require.Contains(t, logged(), "possible downgrade")
		require.Contains(t, logged(), "bob@example.org/liar")

		require.NoError(t, real.s.Send(context.Background(), stanza.Presence{Type: stanza.UnavailablePresence}.Wrap(nil)))
		synctest.Wait()
		_, err = a.h.Dial(context.Background(), jid.MustParse("bob@example.org"))
		require.ErrorIs(t, err, xtls.ErrDowngrade)
		require.NotErrorIs(t, err, xtls.ErrNotSupported)
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.ServiceUnavailable})
	})
}
