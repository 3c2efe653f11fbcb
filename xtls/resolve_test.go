package xtls_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// discoCounter counts the disco#info queries each address receives.
type discoCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (d *discoCounter) trace(s xtlstest.Stanza) {
	if s.Name == "iq" && s.Type == "get" && bytes.Contains(s.Raw, []byte(disco.NSInfo)) {
		d.mu.Lock()
		if d.n == nil {
			d.n = make(map[string]int)
		}
		d.n[s.To.String()]++
		d.mu.Unlock()
	}
}

func (d *discoCounter) count(to string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[to]
}

// announce sends n's available presence with the given priority: through
// the Handler (with caps) if it has one, plain otherwise.
func announce(t testing.TB, n *node, prio int) {
	t.Helper()
	p := xmlstream.Wrap(xmlstream.Token(xml.CharData(strconv.Itoa(prio))), xml.StartElement{Name: xml.Name{Local: "priority"}})
	var err error
	if n.h != nil {
		err = n.h.SendPresence(context.Background(), stanza.Presence{}, p)
	} else {
		err = n.s.Send(context.Background(), stanza.Presence{}.Wrap(p))
	}
	require.NoError(t, err)
}

// caps sends n's available presence with the given <c/>, whatever n is.
func sendCaps(t testing.TB, n *node, c disco.Caps) {
	t.Helper()
	require.NoError(t, n.s.Send(context.Background(), stanza.Presence{}.Wrap(c.TokenReader())))
}

func tofu() xtls.Config { return xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()} }

// dialPeer dials peer from a and returns whom it reached (b's Listener must
// accept, which the test arranges with listen).
func dialPeer(t testing.TB, a *node, peer string) (jid.JID, error) {
	t.Helper()
	c, err := a.h.Dial(context.Background(), jid.MustParse(peer))
	if err != nil {
		return jid.JID{}, err
	}
	defer c.Close()
	return c.State().Peer, nil
}

// listen accepts and closes tunnels on n until the test ends.
func listen(t testing.TB, n *node) {
	ln := n.h.Listen()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
}

// Dial to a bare JID reaches the resource that advertises XTLS, not the one
// with the higher priority that does not; caps seen before spare a
// disco#info query.
func TestDialBareJID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dc discoCounter
		w := newWorld(t, xtlstest.AllContacts(), xtlstest.Trace(dc.trace))
		a := w.join(aliceJID, tofu())
		phone := w.joinWith("bob@example.org/phone", xtls.Config{}, true)
		laptop := w.join("bob@example.org/laptop", tofu())
		listen(t, laptop)
		announce(t, a, 0)
		announce(t, phone, 10)
		announce(t, laptop, 0)
		synctest.Wait()

		got, err := dialPeer(t, a, "bob@example.org")
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/laptop", got.String())
		require.Equal(t, 1, dc.count("bob@example.org/phone"), "no caps: asked once")
		require.Equal(t, 1, dc.count("bob@example.org/laptop"), "caps not seen before: asked once")

		// Known now: no more queries.
		got, err = dialPeer(t, a, "bob@example.org")
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/laptop", got.String())
		require.Equal(t, 1, dc.count("bob@example.org/phone"))
		require.Equal(t, 1, dc.count("bob@example.org/laptop"))

		// A new resource with the same caps and a higher priority is taken
		// without a query: the verification string was checked.
		desk := w.join("bob@example.org/desk", tofu())
		listen(t, desk)
		announce(t, desk, 5)
		synctest.Wait()
		res, err := a.h.Resolve(context.Background(), jid.MustParse("bob@example.org"))
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/desk", res.String())
		require.Zero(t, dc.count("bob@example.org/desk"))

		// A full JID is dialed as it is.
		got, err = dialPeer(t, a, "bob@example.org/laptop")
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/laptop", got.String())
	})
}

// Among XTLS resources: the highest priority, then the latest presence.
func TestDialBarePreference(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, xtlstest.AllContacts())
		a := w.join(aliceJID, tofu())
		one := w.join("bob@example.org/one", tofu())
		two := w.join("bob@example.org/two", tofu())
		announce(t, a, 0)
		bob := jid.MustParse("bob@example.org")
		resolve := func() string {
			synctest.Wait()
			j, err := a.h.Resolve(context.Background(), bob)
			require.NoError(t, err)
			return j.Resourcepart()
		}
		announce(t, one, 1)
		synctest.Wait() // one's presence first
		announce(t, two, 1)
		require.Equal(t, "two", resolve(), "same priority: the latest")
		announce(t, one, 1)
		require.Equal(t, "one", resolve())
		announce(t, two, 2)
		require.Equal(t, "two", resolve(), "higher priority")
		announce(t, one, 1)
		require.Equal(t, "two", resolve(), "priority before recency")
		require.NoError(t, two.s.Send(context.Background(), stanza.Presence{Type: stanza.UnavailablePresence}.Wrap(nil)))
		require.Equal(t, "one", resolve(), "two went unavailable")
	})
}

// Without a resource to dial, the error says whether the peer is offline
// or has no client with XTLS.
func TestDialBareErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dc discoCounter
		w := newWorld(t, xtlstest.Contacts(func(user, contact jid.JID) bool {
			return user.Localpart() != "erin" && contact.Localpart() != "erin"
		}), xtlstest.Trace(dc.trace))
		a := w.join(aliceJID, tofu())
		announce(t, a, 0)
		phone := w.joinWith("dave@example.org/phone", xtls.Config{}, true)
		announce(t, phone, 0)
		erin := w.join("erin@example.org/e", tofu())
		announce(t, erin, 0)
		synctest.Wait()

		for _, tc := range []struct {
			peer      string
			err, also error
			resources []string
		}{
			{peer: "carol@example.org", err: xtls.ErrPeerOffline, also: xtls.ErrPeerUnavailable},
			{peer: "erin@example.org", err: xtls.ErrPeerOffline, also: xtls.ErrPeerUnavailable}, // not a contact
			{peer: "dave@example.org", err: xtls.ErrNoXTLSClient, also: xtls.ErrNotSupported, resources: []string{"dave@example.org/phone"}},
		} {
			_, err := a.h.Dial(context.Background(), jid.MustParse(tc.peer))
			require.ErrorIs(t, err, tc.err, tc.peer)
			require.ErrorIs(t, err, tc.also, tc.peer)
			var re *xtls.ResolveError
			require.ErrorAs(t, err, &re)
			require.Equal(t, tc.peer, re.Peer.String())
			var res []string
			for _, r := range re.Resources {
				res = append(res, r.String())
			}
			require.Equal(t, tc.resources, res)
			require.Contains(t, err.Error(), tc.peer)
		}
		_, err := a.h.Resolve(context.Background(), jid.MustParse("carol@example.org"))
		require.NotErrorIs(t, err, xtls.ErrNotSupported)

		// Queries cut short by ctx say nothing about the peer, and are not
		// sent: mellium would turn the done ctx into a deadline in the past
		// that could fail the session's next write (the Dial to bob below).
		frank := w.joinWith("frank@example.org/f", xtls.Config{}, true)
		announce(t, frank, 0)
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = a.h.Resolve(ctx, jid.MustParse("frank@example.org"))
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, xtls.ErrNotSupported)
		synctest.Wait()
		require.Zero(t, dc.count("frank@example.org/f"))

		// A peer whose session ends is offline again.
		bob := w.join("bob@example.org/b", tofu())
		listen(t, bob)
		announce(t, bob, 0)
		synctest.Wait()
		_, err = dialPeer(t, a, "bob@example.org")
		require.NoError(t, err)
		require.NoError(t, w.n.Disconnect(bob.addr, stream.Error{}))
		synctest.Wait()
		_, err = a.h.Resolve(context.Background(), jid.MustParse("bob@example.org"))
		require.ErrorIs(t, err, xtls.ErrPeerOffline)
	})
}

// For 3 s after our initial presence a bare JID is waited for: its
// presence may not have arrived yet.
func TestDialBareWaitsForPresence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, xtlstest.AllContacts())
		first := w.join(aliceJID, tofu())
		announce(t, first, 0)
		began := time.Now()
		_, err := first.h.Resolve(context.Background(), jid.MustParse("carol@example.org"))
		require.ErrorIs(t, err, xtls.ErrPeerOffline)
		require.Equal(t, 3*time.Second, time.Since(began))

		bob := w.join(bobJID, tofu())
		a := w.join("alice@example.net/other", tofu())
		announce(t, a, 0)
		sent := make(chan error, 1)
		go func() {
			time.Sleep(time.Second)
			sent <- bob.h.SendPresence(context.Background(), stanza.Presence{}, nil)
		}()
		began = time.Now()
		res, err := a.h.Resolve(context.Background(), jid.MustParse("bob@example.org"))
		require.NoError(t, <-sent)
		require.NoError(t, err)
		require.Equal(t, bobJID, res.String())
		require.Equal(t, time.Second, time.Since(began))

		// Once the first's 3 s have passed, at once.
		began = time.Now()
		_, err = first.h.Resolve(context.Background(), jid.MustParse("carol@example.org"))
		require.ErrorIs(t, err, xtls.ErrPeerOffline)
		require.Zero(t, time.Since(began))
	})
}

// Caps are trusted only once verified: a resource that claims the caps of
// an XTLS client but answers without XTLS is not dialed and does not
// poison the cache; a resource that claims a verified ver is taken at its
// word, and if it was lying Dial goes on to the next resource.
func TestDialBareCapsVerified(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dc discoCounter
		w := newWorld(t, xtlstest.AllContacts(), xtlstest.Trace(dc.trace))
		a := w.join(aliceJID, tofu())
		announce(t, a, 0)
		claimed := a.h.Caps() // an XTLS client's caps, the same for every Handler here

		liar := w.joinWith("bob@example.org/liar", xtls.Config{}, true)
		sendCaps(t, liar, claimed)
		synctest.Wait()
		_, err := a.h.Dial(context.Background(), jid.MustParse("bob@example.org"))
		require.ErrorIs(t, err, xtls.ErrNoXTLSClient)
		require.Equal(t, 1, dc.count("bob@example.org/liar"))

		real := w.join("bob@example.org/real", tofu())
		listen(t, real)
		announce(t, real, -1)
		synctest.Wait()
		got, err := dialPeer(t, a, "bob@example.org")
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/real", got.String())
		require.Equal(t, 1, dc.count("bob@example.org/real"), "the liar's answer was not cached")

		// Verified now: a second liar is believed, and Dial moves on.
		liar2 := w.joinWith("bob@example.org/liar2", xtls.Config{}, true)
		sendCaps(t, liar2, claimed)
		synctest.Wait()
		res, err := a.h.Resolve(context.Background(), jid.MustParse("bob@example.org"))
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/liar2", res.String())
		require.Zero(t, dc.count("bob@example.org/liar2"))
		got, err = dialPeer(t, a, "bob@example.org")
		require.NoError(t, err)
		require.Equal(t, "bob@example.org/real", got.String())
	})
}

// The Handler answers disco#info for its caps node with what its mux
// answers for none, and nothing for another ver.
func TestCapsNode(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, tofu())
		b := w.join(bobJID, tofu())
		c := a.h.Caps()
		require.Equal(t, xtls.CapsNode, c.Node)
		require.Equal(t, "sha-1", c.Hash.String())
		root, err := disco.GetInfo(context.Background(), "", a.addr, b.s)
		require.NoError(t, err)
		node, err := disco.GetInfo(context.Background(), c.Node+"#"+c.Ver, a.addr, b.s)
		require.NoError(t, err)
		require.ElementsMatch(t, vars(root.Features), vars(node.Features))
		require.Contains(t, vars(node.Features), xtls.NS)
		other, err := disco.GetInfo(context.Background(), c.Node+"#stale", a.addr, b.s)
		require.NoError(t, err)
		require.Empty(t, other.Features)
	})
}

func vars(fs []info.Feature) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Var)
	}
	return out
}

// Caps called before the Handler's mux exists describes the Handler alone;
// that ver is answered (and verifies) as well as the mux's.
func TestCapsBeforeMux(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dc discoCounter
		w := newWorld(t, xtlstest.AllContacts(), xtlstest.Trace(dc.trace))
		b := w.join(bobJID, tofu())
		announce(t, b, 0)
		early := func(addr string) {
			s, err := w.n.Session(context.Background(), jid.MustParse(addr))
			require.NoError(t, err)
			cfg := tofu()
			cfg.Certificate = cert(t, addr)
			h := xtls.NewHandler(s, &cfg)
			c := h.Caps()
			m := mux.New(stanza.NSClient, disco.Handle(), h.Handle())
			require.NotEqual(t, c.Ver, h.Caps().Ver)
			served := make(chan struct{})
			go func() { s.Serve(m); close(served) }()
			t.Cleanup(func() { h.Close(); s.Close(); <-served })
			require.NoError(t, s.Send(context.Background(), stanza.Presence{}.Wrap(c.TokenReader())))
		}
		early("alice@example.net/one")
		synctest.Wait()
		res, err := b.h.Resolve(context.Background(), jid.MustParse("alice@example.net"))
		require.NoError(t, err)
		require.Equal(t, "alice@example.net/one", res.String())
		require.Equal(t, 1, dc.count("alice@example.net/one"))
		early("alice@example.net/two")
		synctest.Wait()
		res, err = b.h.Resolve(context.Background(), jid.MustParse("alice@example.net"))
		require.NoError(t, err)
		require.Equal(t, "alice@example.net/two", res.String())
		require.Zero(t, dc.count("alice@example.net/two"), "verified, cached")
	})
}

// A contact's unavailable presence ends its tunnels at once, with an error
// that says the peer went away, instead of when the keep-alive notices; a
// tunnel that may be re-attached (contract 5) waits for the peer to come
// back instead, and ends after Config.Reattach, saying both.
func TestUnavailablePresenceEndsTunnels(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reattach time.Duration
		after    time.Duration // when the tunnel ends, within a second
	}{
		{"no re-attach", -1, 0},
		{"re-attach", 10 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t, xtlstest.AllContacts())
				cfg := tofu()
				cfg.Reattach = tc.reattach
				a := w.join(aliceJID, cfg)
				b := w.join(bobJID, cfg)
				announce(t, a, 0)
				announce(t, b, 0)
				x, y, err := dialAccept(t, a, b)
				require.NoError(t, err)
				defer y.Close()
				t0 := time.Now()
				require.NoError(t, w.n.Disconnect(b.addr, stream.Error{}))
				_, err = x.Read(make([]byte, 1))
				require.ErrorIs(t, err, transport.ErrPeerGone)
				if tc.reattach > 0 {
					require.ErrorIs(t, err, transport.ErrNotReattached)
				}
				require.GreaterOrEqual(t, time.Since(t0), tc.after)
				require.Less(t, time.Since(t0), tc.after+time.Second)
				x.Close()
			})
		})
	}
}
