package xtlstest_test

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// presences returns the presences in the inbox, as "from type" (type "" as
// "available"), sorted, once the network has delivered everything.
func presences(t *testing.T, in inbox) []string {
	t.Helper()
	synctest.Wait()
	var got []string
	for {
		select {
		case s := <-in:
			require.Equal(t, "presence", s.Name.Local)
			typ := attr(s, "type")
			if typ == "" {
				typ = "available"
			}
			got = append(got, attr(s, "from")+" "+typ)
		default:
			slices.Sort(got)
			return got
		}
	}
}

func sendPresence(t *testing.T, c *client, typ stanza.PresenceType, to string) {
	t.Helper()
	p := stanza.Presence{Type: typ}
	if to != "" {
		p.To = jid.MustParse(to)
	}
	require.NoError(t, c.Send(context.Background(), p.Wrap(nil)))
}

// Presence goes where a server would send it: broadcasts to the available
// sessions of contacts and of the sender's own account (itself included),
// the contacts' stored presence to a session that becomes available, an
// unavailable presence for a session that ends, directed presence to the
// available sessions of a bare JID whoever they are.
func TestPresenceRouting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		contacts := func(user, contact jid.JID) bool {
			pair := []string{user.Localpart(), contact.Localpart()}
			slices.Sort(pair)
			return pair[0] == "alice" && pair[1] == "bob"
		}
		n := xtlstest.NewNetwork(xtlstest.Contacts(contacts))
		ia, ia2, ib, ic := newInbox(), newInbox(), newInbox(), newInbox()
		a := connect(t, n, "alice@example.net/a", ia)
		a2 := connect(t, n, "alice@example.net/a2", ia2)
		b := connect(t, n, "bob@example.net/b", ib)
		c := connect(t, n, "carol@example.net/c", ic)

		sendPresence(t, b, "", "")
		require.Equal(t, []string{"bob@example.net/b available"}, presences(t, ib))

		sendPresence(t, a, "", "")
		require.Equal(t, []string{"alice@example.net/a available", "bob@example.net/b available"}, presences(t, ia))
		require.Equal(t, []string{"alice@example.net/a available"}, presences(t, ib))
		require.Empty(t, presences(t, ia2), "not available yet")
		require.Empty(t, presences(t, ic), "not a contact")

		sendPresence(t, c, "", "")
		require.Equal(t, []string{"carol@example.net/c available"}, presences(t, ic))
		require.Empty(t, presences(t, ia))

		sendPresence(t, a2, "", "")
		require.Equal(t, []string{"alice@example.net/a available", "alice@example.net/a2 available", "bob@example.net/b available"}, presences(t, ia2))
		require.Equal(t, []string{"alice@example.net/a2 available"}, presences(t, ia))
		require.Equal(t, []string{"alice@example.net/a2 available"}, presences(t, ib))

		// A second available presence is no initial presence: no probes.
		sendPresence(t, a2, "", "")
		require.Equal(t, []string{"alice@example.net/a2 available"}, presences(t, ia2))
		require.Equal(t, []string{"alice@example.net/a2 available"}, presences(t, ia))
		require.Equal(t, []string{"alice@example.net/a2 available"}, presences(t, ib))

		sendPresence(t, b, stanza.UnavailablePresence, "")
		require.Equal(t, []string{"bob@example.net/b unavailable"}, presences(t, ia))
		require.Equal(t, []string{"bob@example.net/b unavailable"}, presences(t, ia2))
		require.Equal(t, []string{"bob@example.net/b unavailable"}, presences(t, ib))

		require.NoError(t, n.Disconnect(a2.LocalAddr(), stream.Error{}))
		require.NoError(t, a2.serveResult(t))
		require.Equal(t, []string{"alice@example.net/a2 unavailable"}, presences(t, ia))
		require.Empty(t, presences(t, ib), "bob is unavailable")

		// Directed presence reaches anyone available.
		sendPresence(t, c, "", "alice@example.net")
		require.Equal(t, []string{"carol@example.net/c available"}, presences(t, ia))
		sendPresence(t, c, "", "bob@example.net")
		require.Empty(t, presences(t, ib), "bob is unavailable")
		sendPresence(t, c, "", "bob@example.net/b")
		require.Equal(t, []string{"carol@example.net/c available"}, presences(t, ib))
		closeAll(t, n, a, b, c)
	})
}

// AllContacts: everyone sees everyone.
func TestPresenceAllContacts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork(xtlstest.AllContacts())
		ia, ib := newInbox(), newInbox()
		a := connect(t, n, "alice@example.net/a", ia)
		b := connect(t, n, "bob@example.org/b", ib)
		sendPresence(t, a, "", "")
		sendPresence(t, b, "", "")
		require.Equal(t, []string{"alice@example.net/a available", "bob@example.org/b available"}, presences(t, ia))
		require.Equal(t, []string{"alice@example.net/a available", "bob@example.org/b available"}, presences(t, ib))
		closeAll(t, n, a, b)
	})
}
