package xtls_test

import (
	"context"
	"fmt"
	"io"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// A tunnel moves onto the SOCKS5 proxy of alice's server (XEP-0065) and
// back to IQs, without a new handshake; Path says where it is. With the
// default Config.Bytestreams a tunnel that moves bulk data does so by
// itself; OnRequest leaves it to the application.
func ExampleConn_MoveToBytestream() {
	ctx := context.Background()
	network := xtlstest.NewNetwork(xtlstest.Proxy65("example.net"))
	defer network.Close()
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
			Bytestreams:     xtls.BytestreamOnRequest,
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
		io.Copy(io.Discard, conn)
	}()
	conn, err := alice.Dial(ctx, jid.MustParse("bob@example.org/laptop"))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	if err := conn.MoveToBytestream(ctx); err != nil {
		panic(err)
	}
	conn.Write(make([]byte, 1<<20))
	p := conn.Path()
	fmt.Println("on a bytestream:", p.Bytestream, "through", p.Proxy)
	<-conn.LeaveBytestream()
	fmt.Println("on a bytestream:", conn.Path().Bytestream, "moves:", conn.Path().Moves)
	// Output:
	// on a bytestream: true through proxy.example.net
	// on a bytestream: false moves: 1
}
