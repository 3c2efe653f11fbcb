package xtlstest_test

import (
	"context"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/ping"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// Two sessions on a network with 50 ms of latency each way: Alice pings Bob.
func Example() {
	n := xtlstest.NewNetwork(xtlstest.Latency(50*time.Millisecond, 0))
	defer n.Close()

	ctx := context.Background()
	alice, err := n.Session(ctx, jid.MustParse("alice@example.net/phone"))
	if err != nil {
		panic(err)
	}
	bob, err := n.Session(ctx, jid.MustParse("bob@example.net/laptop"))
	if err != nil {
		panic(err)
	}
	go alice.Serve(nil)
	go bob.Serve(mux.New(stanza.NSClient, ping.Handle()))

	start := time.Now()
	err = ping.Send(ctx, alice, bob.LocalAddr())
	fmt.Println("ping:", err, time.Since(start) >= 100*time.Millisecond)
	fmt.Println("routed:", n.Stats().Stanzas)
	// Output:
	// ping: <nil> true
	// routed: 2
}

// Trace shows every stanza the network routes, as a demo's -trace flag does.
func ExampleTrace() {
	n := xtlstest.NewNetwork(xtlstest.Trace(func(s xtlstest.Stanza) {
		fmt.Printf("%s -> %s: %s type=%q\n", s.From, s.To, s.Name, s.Type)
	}))
	defer n.Close()

	ctx := context.Background()
	alice, err := n.Session(ctx, jid.MustParse("alice@example.net/phone"))
	if err != nil {
		panic(err)
	}
	bob, err := n.Session(ctx, jid.MustParse("bob@example.net/laptop"))
	if err != nil {
		panic(err)
	}
	go alice.Serve(nil)
	go bob.Serve(mux.New(stanza.NSClient, ping.Handle()))

	if err := ping.Send(ctx, alice, bob.LocalAddr()); err != nil {
		panic(err)
	}
	// Output:
	// alice@example.net/phone -> bob@example.net/laptop: iq type="get"
	// bob@example.net/laptop -> alice@example.net/phone: iq type="result"
}
