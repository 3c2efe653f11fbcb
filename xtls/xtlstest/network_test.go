package xtlstest_test

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
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
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

var (
	alice   = jid.MustParse("alice@example.net/a")
	bob     = jid.MustParse("bob@example.net/b")
	mallory = jid.MustParse("mallory@evil.example/m")
)

func TestSessionAddresses(t *testing.T) {
	n := xtlstest.NewNetwork()
	a := connect(t, n, alice.String(), nil)
	require.True(t, a.LocalAddr().Equal(alice), "LocalAddr = %s", a.LocalAddr())
	require.True(t, a.RemoteAddr().Equal(alice.Domain()), "RemoteAddr = %s", a.RemoteAddr())
	require.Equal(t, stanza.NSClient, a.In().XMLNS)
	require.Equal(t, stanza.NSClient, a.Out().XMLNS)
	closeAll(t, n, a)
}

var sessionErrorTests = [...]struct {
	addr   string
	before func(*xtlstest.Network)
	err    error
}{
	0: {addr: "alice@example.net", err: xtlstest.ErrNotFullJID},
	1: {addr: "example.net", err: xtlstest.ErrNotFullJID},
	2: {
		addr: "alice@example.net/a",
		before: func(n *xtlstest.Network) {
			if _, err := n.Session(context.Background(), alice); err != nil {
				panic(err)
			}
		},
		err: xtlstest.ErrAddrInUse,
	},
	3: {addr: "alice@example.net/a", before: func(n *xtlstest.Network) { n.Close() }, err: xtlstest.ErrClosed},
}

func TestSessionErrors(t *testing.T) {
	for i, tc := range sessionErrorTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := xtlstest.NewNetwork()
				defer n.Close()
				if tc.before != nil {
					tc.before(n)
				}
				_, err := n.Session(context.Background(), jid.MustParse(tc.addr))
				require.ErrorIs(t, err, tc.err)
			})
		})
	}
}

var fromTests = [...]struct {
	spoofing bool
	from     xml.Attr // written by the client, if Value is set
	want     string   // 'from' as delivered
}{
	0: {want: alice.String()},
	1: {from: xml.Attr{Name: xml.Name{Local: "from"}, Value: mallory.String()}, want: alice.String()},
	2: {from: xml.Attr{Name: xml.Name{Local: "from"}, Value: "not a valid JID@@"}, want: alice.String()},
	3: {spoofing: true, want: alice.String()},
	4: {spoofing: true, from: xml.Attr{Name: xml.Name{Local: "from"}, Value: mallory.String()}, want: mallory.String()},
	// mellium reads a prefixed 'from' too, so the network overwrites it.
	5: {from: xml.Attr{Name: xml.Name{Space: "urn:example:x", Local: "from"}, Value: mallory.String()}, want: alice.String()},
}

func TestFromStamping(t *testing.T) {
	for i, tc := range fromTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := xtlstest.NewNetwork()
				var opts []xtlstest.SessionOption
				if tc.spoofing {
					opts = append(opts, xtlstest.Spoofing())
				}
				a := connect(t, n, alice.String(), nil, opts...)
				in := newInbox()
				b := connect(t, n, bob.String(), in)

				start := stanza.Message{ID: "m1", To: bob, Type: stanza.ChatMessage}.StartElement()
				if tc.from.Value != "" {
					start.Attr = append(start.Attr, tc.from)
				}
				require.NoError(t, a.SendElement(context.Background(), xmlstream.MultiReader(), start))
				got := in.next(t)
				for _, at := range got.Attr {
					if at.Name.Local == "from" {
						require.Equal(t, tc.want, at.Value, "attribute %v", at.Name)
					}
				}
				require.Equal(t, tc.want, attr(got, "from"))
				require.Equal(t, "m1", attr(got, "id"))
				closeAll(t, n, a, b)
			})
		})
	}
}

var unavailableTests = [...]struct {
	to       string // "" for none
	wantFrom string
}{
	0: {to: "carol@example.net/c", wantFrom: "carol@example.net/c"}, // offline
	1: {to: "bob@example.net", wantFrom: "bob@example.net"},         // bare JID of a connected user
	2: {to: "example.net", wantFrom: "example.net"},                 // domain
	3: {to: "", wantFrom: "example.net"},                            // the server itself
	4: {to: "bob@example.net/other", wantFrom: "bob@example.net/other"},
	5: {to: "nobody@nowhere.example/x", wantFrom: "nobody@nowhere.example/x"},
}

func TestServiceUnavailable(t *testing.T) {
	for i, tc := range unavailableTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := xtlstest.NewNetwork()
				a := connect(t, n, alice.String(), nil)
				in := newInbox()
				b := connect(t, n, bob.String(), in)
				var to jid.JID
				if tc.to != "" {
					to = jid.MustParse(tc.to)
				}

				iq, err := request(context.Background(), a.Session, to, nil)
				require.ErrorIs(t, err, stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable})
				require.Equal(t, tc.wantFrom, iq.From.String())
				require.Equal(t, stanza.ErrorIQ, iq.Type)

				// Messages, and errors and results, are dropped silently.
				message(t, a.Session, to, 1)
				require.NoError(t, a.Send(context.Background(), stanza.IQ{ID: "r1", To: to, Type: stanza.ResultIQ}.Wrap(nil)))
				synctest.Wait()
				require.Empty(t, in)
				st := n.Stats()
				require.Equal(t, int64(3), st.Stanzas)
				require.Equal(t, int64(1), st.Bounced)
				require.Equal(t, int64(2), st.Discarded)
				closeAll(t, n, a, b)
			})
		})
	}
}

// The case that deadlocks two mellium sessions over net.Pipe: both send IQs
// to the other at once, many in flight.
func TestConcurrentIQsBothWays(t *testing.T) {
	const perSide, workers = 2000, 16
	n := xtlstest.NewNetwork()
	a := connect(t, n, alice.String(), echo())
	b := connect(t, n, bob.String(), echo())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	text := bytes.Repeat([]byte("0123456789abcdef"), 64)
	for _, pair := range [][2]*client{{a, b}, {b, a}} {
		from, to := pair[0], pair[1].LocalAddr()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < perSide; i += workers {
					iq, err := request(ctx, from.Session, to, text)
					if err == nil && (iq.Type != stanza.ResultIQ || !iq.From.Equal(to)) {
						err = fmt.Errorf("unexpected response %+v", iq)
					}
					if err != nil {
						errs <- fmt.Errorf("%s, request %d: %w", from.LocalAddr(), i, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(4*perSide), n.Stats().Stanzas)
	closeAll(t, n, a, b)
}

func TestClientClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork()
		defer n.Close()
		a := connect(t, n, alice.String(), nil)
		require.NoError(t, a.Close())
		require.NoError(t, a.serveResult(t))

		// The address is free again, and the old session unreachable.
		b := connect(t, n, bob.String(), nil)
		_, err := request(context.Background(), b.Session, alice, nil)
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.ServiceUnavailable})
		a = connect(t, n, alice.String(), echo())
		_, err = request(context.Background(), b.Session, alice, nil)
		require.NoError(t, err)
		closeAll(t, n, a, b)
	})
}

func TestDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork(xtlstest.Latency(time.Second, 0))
		a := connect(t, n, alice.String(), nil)
		b := connect(t, n, bob.String(), echo())

		// A request is on its way to Bob when he is disconnected: it is
		// bounced once the network finds Bob gone.
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			_, err := request(context.Background(), a.Session, bob, nil)
			done <- err
		}()
		time.Sleep(500 * time.Millisecond)
		require.NoError(t, n.Disconnect(bob, stream.Conflict))
		err := b.serveResult(t)
		require.ErrorIs(t, err, stream.Conflict)
		require.ErrorIs(t, <-done, stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable})
		require.Equal(t, 1500*time.Millisecond, time.Since(start))

		require.ErrorIs(t, n.Disconnect(bob, stream.Conflict), xtlstest.ErrNotConnected)
		require.NoError(t, n.Disconnect(alice, stream.Error{}))
		require.NoError(t, a.serveResult(t))
		require.NoError(t, n.Close())
	})
}

// Close ends every session and every goroutine of the network: synctest.Test
// fails if any goroutine is left blocked in the bubble.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork(xtlstest.Latency(10*time.Millisecond, 5*time.Millisecond),
			xtlstest.Bandwidth(1<<20), xtlstest.Reorder(0.2), xtlstest.Duplicate(0.2))
		a := connect(t, n, alice.String(), echo())
		b := connect(t, n, bob.String(), echo())
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					request(ctx, a.Session, bob, make([]byte, 1000))
				}
			}()
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					request(ctx, b.Session, alice, make([]byte, 1000))
				}
			}()
		}
		wg.Wait()
		closeAll(t, n, a, b)
		require.Positive(t, n.Stats().Stanzas)
	})
}

// A client that does not close its stream is cut off after CloseTimeout.
func TestCloseTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork()
		_, err := n.Session(context.Background(), alice) // Serve never runs
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, n.Close())
		require.Equal(t, xtlstest.CloseTimeout, time.Since(start))
	})
}

func TestTrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []xtlstest.Stanza
		n := xtlstest.NewNetwork(xtlstest.Trace(func(s xtlstest.Stanza) {
			s.Raw = append([]byte(nil), s.Raw...)
			got = append(got, s)
		}))
		a := connect(t, n, alice.String(), nil)
		b := connect(t, n, bob.String(), echo())
		_, err := request(context.Background(), a.Session, bob, []byte("hello"))
		require.NoError(t, err)
		closeAll(t, n, a, b)

		require.Len(t, got, 2)
		req, resp := got[0], got[1]
		require.True(t, req.From.Equal(alice) && req.Sender.Equal(alice) && req.To.Equal(bob))
		require.Equal(t, "iq", req.Name)
		require.Equal(t, "set", req.Type)
		require.True(t, req.IsRequest())
		require.Contains(t, string(req.Raw), "from='"+alice.String()+"'")
		require.Contains(t, string(req.Raw), ">hello</echo>")
		require.True(t, resp.From.Equal(bob) && resp.To.Equal(alice))
		require.Equal(t, "result", resp.Type)
		require.Equal(t, req.ID, resp.ID)
		require.False(t, resp.IsRequest())
	})
}

// Intercept and Spoofing make a man in the middle: Mallory receives what
// Alice sends to Bob, and sends Bob messages in Alice's name.
func TestInterceptManInTheMiddle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork(xtlstest.Intercept(func(s xtlstest.Stanza) (jid.JID, bool) {
			switch {
			case s.ID == "dropped":
				return jid.JID{}, false
			case s.Sender.Equal(alice) && s.To.Equal(bob):
				return mallory, true
			}
			return s.To, true
		}))
		a := connect(t, n, alice.String(), nil)
		bobIn, malloryIn := newInbox(), newInbox()
		b := connect(t, n, bob.String(), bobIn)
		m := connect(t, n, mallory.String(), malloryIn, xtlstest.Spoofing())

		message(t, a.Session, bob, 1)
		got := malloryIn.next(t)
		require.Equal(t, "1", attr(got, "id"))
		require.Equal(t, bob.String(), attr(got, "to"), "the stanza is not rewritten")
		require.Equal(t, alice.String(), attr(got, "from"))

		require.NoError(t, m.Send(context.Background(), stanza.Message{ID: "2", From: alice, To: bob, Type: stanza.ChatMessage}.Wrap(nil)))
		got = bobIn.next(t)
		require.Equal(t, "2", attr(got, "id"))
		require.Equal(t, alice.String(), attr(got, "from"))

		require.NoError(t, m.Send(context.Background(), stanza.Message{ID: "dropped", To: bob}.Wrap(nil)))
		synctest.Wait()
		require.Empty(t, bobIn)
		require.Equal(t, int64(2), n.Stats().Intercepted)
		closeAll(t, n, a, b, m)
	})
}

// A handler that writes nothing lets mellium answer service-unavailable; the
// network forwards that answer like any other stanza.
func TestPeerErrorIsForwarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := xtlstest.NewNetwork()
		a := connect(t, n, alice.String(), nil)
		b := connect(t, n, bob.String(), nil)
		iq, err := request(context.Background(), a.Session, bob, nil)
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.ServiceUnavailable})
		require.True(t, iq.From.Equal(bob))
		require.Equal(t, int64(0), n.Stats().Bounced)
		closeAll(t, n, a, b)
	})
}

var violationTests = [...]struct {
	raw  string
	want stream.Error
}{
	0: {raw: `<iq type='get' id='1'><a></b></iq>`, want: stream.NotWellFormed},
	1: {raw: `<iq type='get' id='1' to=bob/>`, want: stream.NotWellFormed},
	2: {raw: `<foo xmlns='urn:example:foo'/>`, want: stream.UnsupportedStanzaType},
	3: {raw: `<iq xmlns='jabber:server' type='get' id='1'/>`, want: stream.UnsupportedStanzaType},
	4: {raw: `<message><!-- hidden --></message>`, want: stream.RestrictedXML},
	5: {raw: `hello`, want: stream.BadFormat},
}

// A client that breaks the XML rules of a stream gets the stream error a
// server would send, and loses its session.
func TestProtocolViolations(t *testing.T) {
	for i, tc := range violationTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := xtlstest.NewNetwork()
				a := connect(t, n, alice.String(), nil)
				in := newInbox()
				b := connect(t, n, bob.String(), in)
				_, err := a.Conn().Write([]byte(tc.raw))
				require.NoError(t, err)
				require.ErrorIs(t, a.serveResult(t), tc.want)
				synctest.Wait()
				require.Empty(t, in)
				closeAll(t, n, b)
			})
		})
	}
}

// With ServerName the network answers a disco#info get to the server (its
// domain or no 'to') with a server identity of that name; other IQs to the
// server, a disco#info set, and every query without the option are
// answered service-unavailable.
func TestServerName(t *testing.T) {
	server := jid.MustParse("example.net")
	for _, tc := range []struct {
		name   string
		option string
		to     jid.JID
		want   string // identity name; "" for service-unavailable
	}{
		{"domain", "Prosody", server, "Prosody"},
		{"no to", "ejabberd", jid.JID{}, "ejabberd"},
		{"no option", "", server, ""},
		{"other domain", "Prosody", jid.MustParse("example.org"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := xtlstest.NewNetwork(xtlstest.ServerName(tc.option))
				a := connect(t, n, alice.String(), nil)
				inf, err := disco.GetInfo(context.Background(), "", tc.to, a.Session)
				if tc.want == "" {
					require.ErrorIs(t, err, stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable})
				} else {
					require.NoError(t, err)
					require.Equal(t, []info.Identity{{
						XMLName:  xml.Name{Space: disco.NSInfo, Local: "identity"},
						Category: "server", Type: "im", Name: tc.want,
					}}, inf.Identity)
				}
				if tc.option != "" {
					// Not a disco#info get: no service.
					_, err = request(context.Background(), a.Session, tc.to, nil)
					require.ErrorIs(t, err, stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable})
				}
				closeAll(t, n, a)
			})
		})
	}
}
