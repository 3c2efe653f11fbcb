package transport_test

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/nettest"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// makePipe connects two Endpoints over a fresh in-memory network and returns
// both ends of one tunnel; stop closes them, the sessions and the network and
// waits for every goroutine.
func makePipe() (c1, c2 net.Conn, stop func(), err error) {
	n := xtlstest.NewNetwork()
	ctx := context.Background()
	cfg := &transport.Config{CloseTimeout: time.Second, Window: 256 << 10}
	sa, err := n.Session(ctx, alice)
	if err != nil {
		return nil, nil, nil, err
	}
	sb, err := n.Session(ctx, bob)
	if err != nil {
		return nil, nil, nil, err
	}
	ea, eb := transport.NewEndpoint(sa, cfg), transport.NewEndpoint(sb, cfg)
	accepted := make(chan *transport.Conn, 1)
	eb.SetAcceptFunc(func(c *transport.Conn) error { accepted <- c; return nil })
	served := make(chan struct{}, 2)
	go func() {
		err := sa.Serve(mux.New(stanza.NSClient, ea.Handle()))
		ea.SessionEnded(err)
		served <- struct{}{}
	}()
	go func() {
		err := sb.Serve(mux.New(stanza.NSClient, eb.Handle()))
		eb.SessionEnded(err)
		served <- struct{}{}
	}()
	a, err := ea.Dial(ctx, bob, "")
	if err != nil {
		return nil, nil, nil, err
	}
	b := <-accepted
	stop = func() {
		a.Close()
		b.Close()
		ea.Close()
		eb.Close()
		n.Close()
		<-served
		<-served
	}
	return a, b, stop, nil
}

// transport.Conn passes every subtest of x/net's net.Conn conformance suite.
func TestNetConn(t *testing.T) {
	nettest.TestConn(t, makePipe)
}
