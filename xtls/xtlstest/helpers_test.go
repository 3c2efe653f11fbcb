package xtlstest_test

import (
	"context"
	"encoding/xml"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// NS is the namespace of the test payloads.
const NS = "urn:example:xtlstest"

// client is a connected session whose Serve runs in the background.
type client struct {
	*xmpp.Session
	served chan error // receives Serve's result
}

// connect connects addr to n and serves it with h.
func connect(t testing.TB, n *xtlstest.Network, addr string, h xmpp.Handler, opts ...xtlstest.SessionOption) *client {
	t.Helper()
	s, err := n.Session(context.Background(), jid.MustParse(addr), opts...)
	require.NoError(t, err)
	c := &client{Session: s, served: make(chan error, 1)}
	go func() { c.served <- s.Serve(h) }()
	return c
}

// serveResult waits for Serve to return. The timeout only turns a hang into
// a failure.
func (c *client) serveResult(t testing.TB) error {
	t.Helper()
	select {
	case err := <-c.served:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("Serve of %s did not return", c.LocalAddr())
		return nil
	}
}

// closeAll closes n and checks that every client's Serve returns nil.
func closeAll(t testing.TB, n *xtlstest.Network, cs ...*client) {
	t.Helper()
	require.NoError(t, n.Close())
	for _, c := range cs {
		require.NoError(t, c.serveResult(t))
	}
}

// inbox is a handler that records the start element of every stanza it
// receives, and answers IQ requests in NS with an empty result.
type inbox chan xml.StartElement

func newInbox() inbox { return make(inbox, 10000) }

func (in inbox) HandleXMPP(t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	in <- start.Copy()
	if start.Name.Local != "iq" {
		return nil
	}
	iq, err := stanza.NewIQ(*start)
	if err != nil || (iq.Type != stanza.GetIQ && iq.Type != stanza.SetIQ) {
		return err
	}
	_, err = xmlstream.Copy(t, iq.Result(nil))
	return err
}

// next returns the next recorded stanza.
func (in inbox) next(t testing.TB) xml.StartElement {
	t.Helper()
	select {
	case s := <-in:
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("no stanza received")
		return xml.StartElement{}
	}
}

func attr(s xml.StartElement, name string) string {
	for _, a := range s.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// echo is a mux that answers IQ sets of <echo xmlns=NS/> with an empty
// result.
func echo() *mux.ServeMux {
	return mux.New(stanza.NSClient, mux.IQFunc(stanza.SetIQ, xml.Name{Space: NS, Local: "echo"},
		func(iq stanza.IQ, t xmlstream.TokenReadEncoder, _ *xml.StartElement) error {
			_, err := xmlstream.Copy(t, iq.Result(nil))
			return err
		}))
}

// payload is an <echo xmlns=NS/> element with n bytes of text.
func payload(text []byte) xml.TokenReader {
	return xmlstream.Wrap(xmlstream.Token(xml.CharData(text)), xml.StartElement{Name: xml.Name{Space: NS, Local: "echo"}})
}

// request sends an IQ set of <echo/> to to and returns the response's IQ
// header and its error (a stanza.Error if the response is an IQ error).
func request(ctx context.Context, s *xmpp.Session, to jid.JID, text []byte) (stanza.IQ, error) {
	resp, err := s.SendIQElement(ctx, payload(text), stanza.IQ{Type: stanza.SetIQ, To: to})
	if err != nil {
		return stanza.IQ{}, err
	}
	defer resp.Close()
	tok, err := resp.Token()
	if err != nil {
		return stanza.IQ{}, err
	}
	return stanza.UnmarshalIQError(resp, tok.(xml.StartElement))
}

// message sends a chat message with the given id to to.
func message(t testing.TB, s *xmpp.Session, to jid.JID, id int) {
	t.Helper()
	require.NoError(t, s.Send(context.Background(), stanza.Message{ID: strconv.Itoa(id), To: to, Type: stanza.ChatMessage}.Wrap(nil)))
}
