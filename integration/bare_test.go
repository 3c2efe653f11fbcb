package integration

import (
	"encoding/xml"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/integration/harness"
	"github.com/xmppxtls/xtls/xtls"
)

// Dial to a bare JID through a real server: alice subscribes to bob's
// presence, and bob's approval makes the server send her the presence of
// his two clients; Dial reaches the one with XTLS (the laptop, priority 0)
// and skips the one without (the phone, priority 10). Once the laptop goes
// unavailable, bob has no XTLS client; once the phone leaves too, he is
// offline, as is anyone who does not share presence with alice.
func TestDialBareJIDServer(t *testing.T) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			noLeaks(t)
			srv := startOwn(t, kind, ownOpts{})
			alice := contact(t, srv, "alice", "desk", true)
			laptop := contact(t, srv, "bob", "laptop", true)
			phone := contact(t, srv, "bob", "phone", false)
			ctx := ctxT(t)
			require.NoError(t, laptop.h.SendPresence(ctx, stanza.Presence{}, nil))
			require.NoError(t, phone.s.Send(ctx, stanza.Presence{}.Wrap(priority(10))))
			require.NoError(t, alice.h.SendPresence(ctx, stanza.Presence{}, nil))
			bob := laptop.addr.Bare()
			require.NoError(t, alice.s.Send(ctx, stanza.Presence{To: bob, Type: stanza.SubscribePresence}.Wrap(nil)))

			want := func(ok func(jid.JID, error) bool) (jid.JID, error) {
				deadline := time.Now().Add(30 * time.Second)
				for {
					res, err := alice.h.Resolve(ctx, bob)
					if ok(res, err) || time.Now().After(deadline) {
						return res, err
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			res, err := want(func(res jid.JID, err error) bool { return err == nil })
			require.NoError(t, err)
			require.Equal(t, laptop.addr.String(), res.String())

			ln := laptop.h.Listen()
			accepted := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					_, err = c.Write([]byte("laptop"))
					c.Close()
				}
				accepted <- err
			}()
			c, err := alice.h.Dial(ctx, bob)
			require.NoError(t, err)
			require.Equal(t, laptop.addr.String(), c.State().Peer.String())
			buf := make([]byte, 6)
			_, err = c.Read(buf)
			require.NoError(t, err)
			require.Equal(t, "laptop", string(buf))
			require.NoError(t, <-accepted)
			c.Close()

			require.NoError(t, laptop.s.Send(ctx, stanza.Presence{Type: stanza.UnavailablePresence}.Wrap(nil)))
			_, err = want(func(_ jid.JID, err error) bool { return errors.Is(err, xtls.ErrNoXTLSClient) })
			require.ErrorIs(t, err, xtls.ErrNoXTLSClient)
			_, err = alice.h.Dial(ctx, bob)
			require.ErrorIs(t, err, xtls.ErrNotSupported)
			var re *xtls.ResolveError
			require.ErrorAs(t, err, &re)
			require.Equal(t, []jid.JID{phone.addr}, re.Resources)

			phone.close()
			_, err = want(func(_ jid.JID, err error) bool { return errors.Is(err, xtls.ErrPeerOffline) })
			require.ErrorIs(t, err, xtls.ErrPeerOffline)
			_, err = alice.h.Dial(ctx, bob)
			require.ErrorIs(t, err, xtls.ErrPeerUnavailable)

			// A user who is no contact of alice is offline to her.
			_, err = alice.h.Dial(ctx, jid.MustParse("carol@"+srv.Domain()))
			require.ErrorIs(t, err, xtls.ErrPeerOffline)
		})
	}
}

// contact logs user/resource in to srv with disco, an xtls Handler unless
// !withXTLS, and a handler that approves every subscription request.
func contact(t *testing.T, srv *harness.Server, user, resource string, withXTLS bool) *party {
	t.Helper()
	ctx := ctxT(t)
	s, err := srv.ConnectResource(ctx, user, resource, password(user))
	require.NoError(t, err, "%s", srv.Log())
	p := &party{s: s, addr: s.LocalAddr(), done: make(chan struct{})}
	approve := mux.PresenceFunc(stanza.SubscribePresence, xml.Name{}, func(req stanza.Presence, w xmlstream.TokenReadEncoder) error {
		_, err := xmlstream.Copy(w, stanza.Presence{To: req.From.Bare(), Type: stanza.SubscribedPresence}.Wrap(nil))
		return err
	})
	opts := []mux.Option{disco.Handle(), approve}
	if withXTLS {
		cert, err := xtls.GenerateCertificate(p.addr.Bare())
		require.NoError(t, err)
		p.h = xtls.NewHandler(s, &xtls.Config{Certificate: cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		opts = append(opts, p.h.Handle())
	}
	m := mux.New(stanza.NSClient, opts...)
	go func() {
		p.err = s.Serve(m)
		if p.h != nil {
			p.h.SessionEnded(p.err)
		}
		close(p.done)
	}()
	t.Cleanup(p.close)
	return p
}

func priority(n int) xml.TokenReader {
	return xmlstream.Wrap(xmlstream.Token(xml.CharData(strconv.Itoa(n))), xml.StartElement{Name: xml.Name{Local: "priority"}})
}
