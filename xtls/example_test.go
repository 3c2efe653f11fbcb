package xtls_test

import (
	"context"
	"errors"
	"fmt"
	"io"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// Alice dials Bob's full JID and Bob accepts; both trust each other's key on
// first use and pin it. The sessions come from an in-memory network here; in
// an application they are the client's real sessions.
func Example() {
	ctx := context.Background()
	network := xtlstest.NewNetwork()
	defer network.Close()

	// A party: a session, a certificate naming the bare JID, a Handler
	// registered in the session's mux next to disco.
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
		h := xtls.NewHandler(session, &xtls.Config{
			Certificate:     cert,
			Pins:            xtls.NewMemPinStore(),
			TrustOnFirstUse: true,
		})
		go session.Serve(mux.New(stanza.NSClient, disco.Handle(), h.Handle()))
		return h
	}
	alice := party("alice@example.net/phone")
	bob := party("bob@example.org/laptop")
	defer alice.Close()
	defer bob.Close()

	ln := bob.Listen()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "hello alice, this is bob")
	}()

	conn, err := alice.Dial(ctx, jid.MustParse("bob@example.org/laptop"))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	st := conn.State()
	fmt.Println("peer:", st.Peer)
	fmt.Println("tls:", st.VersionName(), st.CurveID)
	fmt.Println("trust:", st.Trust)
	msg, err := io.ReadAll(conn)
	fmt.Printf("read: %q %v\n", msg, err)
	// Output:
	// peer: bob@example.org/laptop
	// tls: TLS 1.3 X25519MLKEM768
	// trust: first-use
	// read: "hello alice, this is bob" <nil>
}

// A key pinned for a bare JID must be presented again: here Bob's key
// changed, and Alice's Dial fails with the pinned and presented
// fingerprints.
func ExamplePinMismatchError() {
	ctx := context.Background()
	network := xtlstest.NewNetwork()
	defer network.Close()
	bobJID := jid.MustParse("bob@example.org/laptop")

	pins := xtls.NewMemPinStore()
	aliceJID := jid.MustParse("alice@example.net/phone")
	as, _ := network.Session(ctx, aliceJID)
	acert, _ := xtls.GenerateCertificate(aliceJID)
	alice := xtls.NewHandler(as, &xtls.Config{Certificate: acert, Pins: pins})
	go as.Serve(mux.New(stanza.NSClient, alice.Handle()))
	defer alice.Close()

	bs, _ := network.Session(ctx, bobJID)
	bcert, _ := xtls.GenerateCertificate(bobJID)
	bob := xtls.NewHandler(bs, &xtls.Config{Certificate: bcert, TrustOnFirstUse: true, Pins: xtls.NewMemPinStore()})
	go bs.Serve(mux.New(stanza.NSClient, bob.Handle()))
	defer bob.Close()
	bob.Listen()

	// Alice had pinned another key for bob@example.org.
	old, _ := xtls.GenerateCertificate(bobJID)
	pins.AddPin(bobJID.Bare(), xtls.SPKIFingerprint(old.Leaf))

	_, err := alice.Dial(ctx, bobJID)
	var pm *xtls.PinMismatchError
	if errors.As(err, &pm) {
		fmt.Println("pinned:   ", pm.Pinned[0] == xtls.SPKIFingerprint(old.Leaf))
		fmt.Println("presented:", pm.Presented == xtls.SPKIFingerprint(bcert.Leaf))
	}
	// Output:
	// pinned:    true
	// presented: true
}
