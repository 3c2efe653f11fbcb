package xtls_test

import (
	"context"
	"encoding/xml"
	"fmt"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// An end-to-end session: a real mellium session inside the tunnel, with its
// own mux. The servers see only IQs carrying Base64; the message inside is
// delivered with from and to taken from the tunnel.
func ExampleDialSession() {
	ctx := context.Background()
	network := xtlstest.NewNetwork()
	defer network.Close()
	handler := func(addr string) *xtls.Handler {
		j := jid.MustParse(addr)
		s, _ := network.Session(ctx, j)
		cert, _ := xtls.GenerateCertificate(j)
		h := xtls.NewHandler(s, &xtls.Config{Certificate: cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		go s.Serve(mux.New(stanza.NSClient, h.Handle()))
		return h
	}
	alice := handler("alice@example.net/phone")
	bob := handler("bob@example.org/laptop")
	defer alice.Close()
	defer bob.Close()

	// Listen before the peer dials: until then, tunnels to bob are refused.
	ln := bob.Listen()
	got := make(chan string)
	go func() {
		inner, err := xtls.AcceptSession(ctx, ln)
		if err != nil {
			panic(err)
		}
		inner.Serve(mux.New(stanza.NSClient, mux.MessageFunc(stanza.ChatMessage, xml.Name{Local: "body"},
			func(msg stanza.Message, t xmlstream.TokenReadEncoder) error {
				var text []byte
				for tok, err := t.Token(); err == nil; tok, err = t.Token() {
					if c, ok := tok.(xml.CharData); ok {
						text = append(text, c...)
					}
				}
				got <- fmt.Sprintf("%s says %q", msg.From, text)
				return nil
			})))
	}()

	inner, err := xtls.DialSession(ctx, alice, jid.MustParse("bob@example.org/laptop"))
	if err != nil {
		panic(err)
	}
	go inner.Serve(nil)
	inner.Send(ctx, stanza.Message{Type: stanza.ChatMessage}.Wrap(
		xmlstream.Wrap(xmlstream.Token(xml.CharData("hello, privately")), xml.StartElement{Name: xml.Name{Local: "body"}})))
	fmt.Println(<-got)
	inner.Close()
	// Output:
	// alice@example.net/phone says "hello, privately"
}
