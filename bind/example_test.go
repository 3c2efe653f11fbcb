package bind_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/bind"
)

// A client logs in as bob@example.org/laptop: Resource takes the place of
// xmpp.BindResource among the stream features.
func Example() {
	ctx := context.Background()
	addr := jid.MustParse("bob@example.org/laptop")
	s, err := xmpp.DialClientSession(ctx, addr.Bare(),
		xmpp.StartTLS(&tls.Config{ServerName: addr.Domain().String(), MinVersion: tls.VersionTLS12}),
		xmpp.SASL("", "password", sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
		bind.Resource(addr.Resourcepart()),
	)
	if err != nil {
		// A *bind.Error if the server refused "laptop" or bound another
		// resource.
		fmt.Println(err)
		return
	}
	fmt.Println(s.LocalAddr()) // bob@example.org/laptop
}

// The server binds the requested resource.
func ExampleResource() {
	conn, stop := connectTo(bound("x"))
	defer stop()
	s, err := negotiate(conn, jid.MustParse("juliet@example.com"), bind.Resource("balcony"))
	if err != nil {
		panic(err)
	}
	defer serve(s)()
	fmt.Println(s.LocalAddr())
	// Output: juliet@example.com/balcony
}

// The server refuses the resource because another session of the account
// has bound it. Without an option that is an error; with Fallback the
// client takes the resource the server assigns.
func ExampleFallback() {
	conn, stop := connectTo(func(n int, res *string, id string) string {
		if n == 0 {
			return refusal(id, "conflict")
		}
		return bound("v1jX2h")(n, res, id)
	})
	defer stop()
	s, err := negotiate(conn, jid.MustParse("juliet@example.com"), bind.Resource("balcony", bind.Fallback()))
	if err != nil {
		panic(err)
	}
	defer serve(s)()
	fmt.Println(s.LocalAddr())
	// Output: juliet@example.com/v1jX2h
}

// Without Fallback, the refusal is a *bind.Error that wraps the server's
// stanza error.
func ExampleError() {
	conn, stop := connectTo(func(_ int, _ *string, id string) string { return refusal(id, "conflict") })
	defer stop()
	_, err := negotiate(conn, jid.MustParse("juliet@example.com"), bind.Resource("balcony"))
	var be *bind.Error
	if errors.As(err, &be) && errors.Is(err, stanza.Error{Condition: stanza.Conflict}) {
		fmt.Printf("%q is in use\n", be.Requested)
	}
	// Output: "balcony" is in use
}

// connectTo starts a server that answers bind requests with ans and
// connects to it.
func connectTo(ans answer) (conn net.Conn, stop func()) {
	srv, err := startServer(ans)
	if err != nil {
		panic(err)
	}
	conn, err = net.Dial("tcp", srv.Addr())
	if err != nil {
		panic(err)
	}
	return conn, srv.Close
}
