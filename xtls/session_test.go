package xtls_test

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// e2e opens a tunnel from a to b and an end-to-end session in it on each
// side; handlers serve each side's inner session.
func e2e(t *testing.T, a, b *node, ha, hb xmpp.Handler, opts ...xtls.SessionOption) (sa, sb *xmpp.Session, served chan error) {
	t.Helper()
	ln := b.h.Listen()
	got := make(chan *xmpp.Session, 1)
	go func() {
		c, err := ln.Accept()
		require.NoError(t, err)
		s, err := xtls.NewSession(context.Background(), c.(*xtls.Conn), opts...)
		require.NoError(t, err)
		got <- s
	}()
	sa, err := xtls.DialSession(context.Background(), a.h, b.addr)
	require.NoError(t, err)
	sb = <-got
	served = make(chan error, 2)
	go func() { served <- sa.Serve(ha) }()
	go func() { served <- sb.Serve(hb) }()
	return sa, sb, served
}

// inbox collects chat message bodies in arrival order.
type inbox struct {
	mu    sync.Mutex
	from  []jid.JID
	to    []jid.JID
	body  []string
	ready chan struct{}
	want  int
}

func newInbox(want int) *inbox { return &inbox{ready: make(chan struct{}), want: want} }

func (in *inbox) HandleMessage(msg stanza.Message, t xmlstream.TokenReadEncoder) error {
	var text strings.Builder
	for {
		tok, err := t.Token()
		if err != nil {
			break
		}
		if c, ok := tok.(xml.CharData); ok {
			text.Write(c)
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.from = append(in.from, msg.From)
	in.to = append(in.to, msg.To)
	in.body = append(in.body, text.String())
	if len(in.body) == in.want {
		close(in.ready)
	}
	return nil
}

func send(ctx context.Context, s *xmpp.Session, to jid.JID, body string) error {
	return s.Send(ctx, stanza.Message{To: to, Type: stanza.ChatMessage}.Wrap(
		xmlstream.Wrap(xmlstream.Token(xml.CharData(body)), xml.StartElement{Name: xml.Name{Local: "body"}})))
}

// Messages and IQs both ways through the tunnel, routed from the tunnel:
// from is the peer's full JID, to ours.
func TestSessionMessagesAndIQs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		ia, ib := newInbox(1), newInbox(1)
		ma := mux.New(stanza.NSClient, mux.Message(stanza.ChatMessage, xml.Name{Local: "body"}, ia), ping.Handle())
		mb := mux.New(stanza.NSClient, mux.Message(stanza.ChatMessage, xml.Name{Local: "body"}, ib), ping.Handle())
		sa, sb, served := e2e(t, a, b, ma, mb)
		require.Equal(t, a.addr, sa.LocalAddr())
		require.Equal(t, b.addr, sa.RemoteAddr())
		ctx := context.Background()
		require.NoError(t, send(ctx, sa, jid.JID{}, "hi bob"))
		require.NoError(t, send(ctx, sb, a.addr, "hi alice"))
		<-ia.ready
		<-ib.ready
		require.Equal(t, []string{"hi bob"}, ib.body)
		require.Equal(t, []jid.JID{a.addr}, ib.from)
		require.Equal(t, []jid.JID{b.addr}, ib.to)
		require.Equal(t, []string{"hi alice"}, ia.body)
		require.NoError(t, ping.Send(ctx, sa, b.addr))
		require.NoError(t, ping.Send(ctx, sb, a.addr))
		// Clean end: closing one side ends both streams, the TLS connection
		// and the tunnel; both Serve loops return nil.
		require.NoError(t, sa.Close())
		require.NoError(t, <-served)
		require.NoError(t, <-served)
	})
}

// 10,000 messages in a burst arrive complete and in order.
func TestSessionBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		const n = 10000
		ib := newInbox(n)
		sa, _, served := e2e(t, a, b, nil, mux.New(stanza.NSClient, mux.Message(stanza.ChatMessage, xml.Name{Local: "body"}, ib)))
		for i := range n {
			require.NoError(t, send(context.Background(), sa, jid.JID{}, fmt.Sprint(i)))
		}
		<-ib.ready
		for i, body := range ib.body {
			require.Equal(t, fmt.Sprint(i), body)
		}
		require.NoError(t, sa.Close())
		<-served
		<-served
	})
}

// A stanza that claims another from, or is addressed to a third party, is
// dropped; the stream goes on.
func TestSessionSpoofedFromRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		logger, logged := newLogger()
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore(), Logger: logger})
		ib := newInbox(1)
		sa, _, served := e2e(t, a, b, nil, mux.New(stanza.NSClient, mux.Message(stanza.ChatMessage, xml.Name{Local: "body"}, ib)))
		ctx := context.Background()
		carol := jid.MustParse("carol@example.com/x")
		body := func(s string) xml.TokenReader {
			return xmlstream.Wrap(xmlstream.Token(xml.CharData(s)), xml.StartElement{Name: xml.Name{Local: "body"}})
		}
		require.NoError(t, sa.Send(ctx, stanza.Message{From: carol, Type: stanza.ChatMessage}.Wrap(body("from carol, honest"))))
		require.NoError(t, sa.Send(ctx, stanza.Message{To: carol, Type: stanza.ChatMessage}.Wrap(body("to carol"))))
		require.NoError(t, send(ctx, sa, jid.JID{}, "genuine"))
		<-ib.ready
		require.Equal(t, []string{"genuine"}, ib.body)
		require.Equal(t, []jid.JID{a.addr}, ib.from)
		require.Contains(t, logged(), "forged from")
		require.Contains(t, logged(), "addressed to someone else")
		require.NoError(t, sa.Close())
		<-served
		<-served
	})
}

// A malformed inner stream, or a stanza over the limit set, closes only that
// tunnel with a clear error; the outer session keeps working.
func TestSessionBrokenInnerStream(t *testing.T) {
	for _, tc := range []struct {
		name, junk, want string
	}{
		{"mismatched", "<message><body>x</mess>", "mismatched end element"},
		{"bad XML", "<message <body>", "malformed XML"},
		{"too big", "<message><body>" + strings.Repeat("x", 5000) + "</body></message>", "larger than 1000 bytes"},
		{"comment", "<!-- hi -->", "comment"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t)
				a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
				b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
				c1, c2, err := dialAccept(t, a, b)
				require.NoError(t, err)
				got := make(chan error, 1)
				go func() {
					s, err := xtls.NewSession(context.Background(), c2, xtls.WithMaxStanzaSize(1000))
					if err != nil {
						got <- err
						return
					}
					got <- s.Serve(nil)
				}()
				// Alice speaks a raw stream: a proper header, then junk.
				_, err = io.WriteString(c1, `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`+tc.junk)
				require.NoError(t, err)
				err = <-got
				var ise *xtls.InnerStreamError
				require.ErrorAs(t, err, &ise)
				require.Contains(t, err.Error(), tc.want)
				io.Copy(io.Discard, c1)
				c1.Close()
				// The outer session is fine: a new tunnel works.
				c3, c4, err := dialAccept(t, a, b)
				require.NoError(t, err)
				exchange(t, c3, c4, 1024)
				c3.Close()
				c4.Close()
			})
		})
	}
}

// Both directions at once: each side floods the other with messages while
// IQs go both ways; requests and responses never wait on each other.
func TestSessionBothWays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t)
		a := w.join(aliceJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		b := w.join(bobJID, xtls.Config{TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
		const n = 2000
		ia, ib := newInbox(n), newInbox(n)
		handler := func(in *inbox) xmpp.Handler {
			return mux.New(stanza.NSClient, mux.Message(stanza.ChatMessage, xml.Name{Local: "body"}, in), ping.Handle())
		}
		sa, sb, served := e2e(t, a, b, handler(ia), handler(ib))
		ctx := context.Background()
		var wg sync.WaitGroup
		for _, s := range []*xmpp.Session{sa, sb} {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for i := range n {
					require.NoError(t, send(ctx, s, jid.JID{}, fmt.Sprint(i)))
				}
			}()
			go func() {
				defer wg.Done()
				for range 50 {
					require.NoError(t, ping.Send(ctx, s, s.RemoteAddr()))
				}
			}()
		}
		wg.Wait()
		<-ia.ready
		<-ib.ready
		require.NoError(t, sb.Close())
		<-served
		<-served
	})
}
