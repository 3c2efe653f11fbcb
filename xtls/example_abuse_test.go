package xtls_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// Alice has pinned Bob's key, so she knows Bob speaks XTLS. When his start
// is answered as by a client without XTLS (here Bob's session really has
// none; it could as well be a server hiding it), Dial reports a possible
// downgrade, not "not supported": never fall back to plaintext on it.
func ExampleDowngradeError() {
	ctx := context.Background()
	network := xtlstest.NewNetwork()
	defer network.Close()
	aliceJID := jid.MustParse("alice@example.net/phone")
	bobJID := jid.MustParse("bob@example.org/laptop")

	pins := xtls.NewMemPinStore()
	bobKey, _ := xtls.GenerateCertificate(bobJID)
	pins.AddPin(bobJID.Bare(), xtls.SPKIFingerprint(bobKey.Leaf))
	as, _ := network.Session(ctx, aliceJID)
	acert, _ := xtls.GenerateCertificate(aliceJID)
	alice := xtls.NewHandler(as, &xtls.Config{Certificate: acert, Pins: pins})
	go as.Serve(mux.New(stanza.NSClient, disco.Handle(), alice.Handle()))
	defer alice.Close()

	bs, _ := network.Session(ctx, bobJID) // disco, and no XTLS
	go bs.Serve(mux.New(stanza.NSClient, disco.Handle()))

	_, err := alice.Dial(ctx, bobJID)
	fmt.Println("downgrade:", errors.Is(err, xtls.ErrDowngrade))
	fmt.Println("not supported:", errors.Is(err, xtls.ErrNotSupported))
	fmt.Println("answer:", errors.Is(err, stanza.Error{Condition: stanza.ServiceUnavailable}))
	// Output:
	// downgrade: true
	// not supported: false
	// answer: true
}

// Config.AcceptFailed hears of failed handshakes one by one until a peer's
// keep failing; then once per back-off, with the count, while the peer's
// starts are refused.
func ExampleBackoffError() {
	cfg := xtls.Config{
		AcceptFailed: func(peer jid.JID, err error) {
			var be *xtls.BackoffError
			if errors.As(err, &be) {
				log.Printf("%d failed handshakes from %s: refused for %s (last: %v)", be.Failures, be.Peer, be.For, be.Last)
				return
			}
			log.Printf("handshake from %s failed: %v", peer, err)
		},
	}
	_ = cfg // with Certificate and a trust rule, for NewHandler
}
