package xtls_test

import (
	"context"
	"encoding/xml"
	"fmt"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// Alice dials Bob's bare JID. Bob is online twice: his phone has the higher
// presence priority but no XTLS, his laptop advertises XTLS in its
// presence (SendPresence adds the entity capabilities), so the laptop is
// dialed. Alice and Bob are contacts: they see each other's presence.
func ExampleHandler_Dial_bareJID() {
	ctx := context.Background()
	network := xtlstest.NewNetwork(xtlstest.AllContacts())
	defer network.Close()

	// Bob's phone: a plain client.
	phone, err := network.Session(ctx, jid.MustParse("bob@example.org/phone"))
	if err != nil {
		panic(err)
	}
	go phone.Serve(mux.New(stanza.NSClient, disco.Handle()))
	phone.Send(ctx, stanza.Presence{}.Wrap(priority("10")))

	party := func(addr string) *xtls.Handler {
		j := jid.MustParse(addr)
		session, err := network.Session(ctx, j)
		if err != nil {
			panic(err)
		}
		cert, err := xtls.GenerateCertificate(j)
		if err != nil {
			panic(err)
		}
		h := xtls.NewHandler(session, &xtls.Config{Certificate: cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		go session.Serve(mux.New(stanza.NSClient, disco.Handle(), h.Handle()))
		// Available, with caps: contacts learn that this client has XTLS.
		if err := h.SendPresence(ctx, stanza.Presence{}, nil); err != nil {
			panic(err)
		}
		return h
	}
	laptop := party("bob@example.org/laptop")
	defer laptop.Close()
	laptop.Listen()
	alice := party("alice@example.net/phone")
	defer alice.Close()

	// Bob's presence reaches Alice in answer to her initial presence; Dial
	// waits for it.
	conn, err := alice.Dial(ctx, jid.MustParse("bob@example.org"))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	fmt.Println("peer:", conn.State().Peer)
	// Output:
	// peer: bob@example.org/laptop
}

func priority(p string) xml.TokenReader {
	return xmlstream.Wrap(xmlstream.Token(xml.CharData(p)), xml.StartElement{Name: xml.Name{Local: "priority"}})
}
