package xtls_test

import (
	"bufio"
	"context"
	"fmt"

	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// Alice's connection drops in the middle of a chat; she logs in again (a
// new resource, here) and hands the Handler the new session: the tunnel
// goes on, with the same TLS session, and bob's end sees her new address.
func ExampleHandler_Reattach() {
	ctx := context.Background()
	network := xtlstest.NewNetwork()
	defer network.Close()
	// serve runs a session for h until it ends, then tells h.
	serve := func(s *xmpp.Session, h *xtls.Handler) <-chan struct{} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.SessionEnded(s.Serve(mux.New(stanza.NSClient, disco.Handle(), h.Handle())))
		}()
		return done
	}
	party := func(addr string) (*xtls.Handler, <-chan struct{}) {
		j := jid.MustParse(addr)
		session, err := network.Session(ctx, j)
		if err != nil {
			panic(err)
		}
		cert, err := xtls.GenerateCertificate(j)
		if err != nil {
			panic(err)
		}
		// Config.Reattach's default holds tunnels 2 minutes.
		h := xtls.NewHandler(session, &xtls.Config{Certificate: cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
		return h, serve(session, h)
	}
	alice, aliceServed := party("alice@example.net/phone")
	bob, _ := party("bob@example.org/laptop")
	defer alice.Close()
	defer bob.Close()

	ln := bob.Listen()
	lines := make(chan string)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewScanner(conn)
		for r.Scan() {
			lines <- r.Text() + " (from " + conn.(*xtls.Conn).State().Peer.String() + ")"
		}
		close(lines)
	}()
	conn, err := alice.Dial(ctx, jid.MustParse("bob@example.org/laptop"))
	if err != nil {
		panic(err)
	}
	fmt.Fprintln(conn, "hello")
	fmt.Println(<-lines)

	// The connection drops.
	network.Disconnect(jid.MustParse("alice@example.net/phone"), stream.SystemShutdown)
	<-aliceServed
	// Alice logs in again and hands the Handler the new session.
	session, err := network.Session(ctx, jid.MustParse("alice@example.net/tablet"))
	if err != nil {
		panic(err)
	}
	if err := alice.Reattach(session); err != nil {
		panic(err)
	}
	serve(session, alice)

	fmt.Fprintln(conn, "still here")
	fmt.Println(<-lines)
	fmt.Println("re-attachments:", conn.Reattachments())
	conn.Close()
	<-lines
	// Output:
	// hello (from alice@example.net/phone)
	// still here (from alice@example.net/tablet)
	// re-attachments: 1
}
