package xtlstest_test

import (
	"context"
	"fmt"
	"io"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/internal/s5b"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// A mediated SOCKS5 bytestream (XEP-0065) through the proxy of Alice's
// server: Alice finds it and asks for its streamhost, Bob (the target) and
// then Alice (the requester) connect to it, Alice activates the bytestream,
// and the two exchange bytes.
func ExampleProxy65() {
	n := xtlstest.NewNetwork(xtlstest.Proxy65("example.net"))
	defer n.Close()

	ctx := context.Background()
	alice, err := n.Session(ctx, jid.MustParse("alice@example.net/phone"))
	if err != nil {
		panic(err)
	}
	go alice.Serve(nil)
	bob := jid.MustParse("bob@example.org/laptop") // needs no session here

	proxies, err := s5b.FindProxies(ctx, alice, alice.LocalAddr().Domain())
	if err != nil {
		panic(err)
	}
	hosts, err := s5b.GetStreamHosts(ctx, alice, proxies[0])
	if err != nil {
		panic(err)
	}
	fmt.Println("proxy:", proxies[0], "at", hosts[0].Host)

	const sid = "s1"
	target, err := s5b.Dial(ctx, hosts[0], sid, alice.LocalAddr(), bob)
	if err != nil {
		panic(err)
	}
	defer target.Close()
	requester, err := s5b.Dial(ctx, hosts[0], sid, alice.LocalAddr(), bob)
	if err != nil {
		panic(err)
	}
	defer requester.Close()
	if err := s5b.Activate(ctx, alice, proxies[0], sid, bob); err != nil {
		panic(err)
	}

	requester.Write([]byte("hello, Bob"))
	buf := make([]byte, 10)
	io.ReadFull(target, buf)
	fmt.Printf("Bob reads %q\n", buf)
	fmt.Println("activated:", n.Proxy("example.net").Stats().Activated)
	// Output:
	// proxy: proxy.example.net at 127.0.0.1
	// Bob reads "hello, Bob"
	// activated: 1
}
