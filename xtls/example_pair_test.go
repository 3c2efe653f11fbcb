package xtls_test

import (
	"context"
	"errors"
	"fmt"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// A device with a secret printed on its back (a door bell, say) pairs with
// anyone who types that secret, and pins them. Each wrong try is one online
// guess; after three the secret is dead for that peer, even when the right
// one follows, so an attacker gets three guesses, not a dictionary.
func ExamplePairingError_botSecret() {
	ctx := context.Background()
	network := xtlstest.NewNetwork()
	defer network.Close()
	party := func(addr string, cfg xtls.Config) *xtls.Handler {
		j := jid.MustParse(addr)
		session, err := network.Session(ctx, j)
		if err != nil {
			panic(err)
		}
		if cfg.Certificate, err = xtls.GenerateCertificate(j); err != nil {
			panic(err)
		}
		h := xtls.NewHandler(session, &cfg)
		go session.Serve(mux.New(stanza.NSClient, disco.Handle(), h.Handle()))
		return h
	}

	const printed = "4711 0815 2342" // on the sticker
	bell := party("bell@example.net/door", xtls.Config{
		Pins: xtls.NewMemPinStore(),
		// Any peer not yet pinned may pair with the printed secret.
		PairingCode: func(jid.JID) ([]byte, bool) { return []byte(printed), true },
	})
	defer bell.Close()
	ln := bell.Listen()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	mallory := party("mallory@example.org/guess", xtls.Config{Pins: xtls.NewMemPinStore()})
	defer mallory.Close()
	for _, guess := range []string{"0000 0000 0000", "1234 5678 9012", "4711 0815 0000", printed} {
		_, err := mallory.Dial(ctx, jid.MustParse("bell@example.net/door"), xtls.WithPairingCode(guess))
		var pe *xtls.PairingError
		if errors.As(err, &pe) {
			fmt.Printf("%s: %s\n", guess, pe.Reason)
		}
	}

	owner := party("owner@example.org/phone", xtls.Config{Pins: xtls.NewMemPinStore()})
	defer owner.Close()
	c, err := owner.Dial(ctx, jid.MustParse("bell@example.net/door"), xtls.WithPairingCode(printed))
	if err != nil {
		panic(err)
	}
	fmt.Println("owner:", c.State().Trust)
	c.Close()
	// Output:
	// 0000 0000 0000: wrong code
	// 1234 5678 9012: wrong code
	// 4711 0815 0000: wrong code
	// 4711 0815 2342: code used up
	// owner: paired
}
