package cli

import (
	"context"
	"net"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// Failed is a tunnel a peer opened whose handshake, trust decision or
// pairing failed (xtls.Config.AcceptFailed).
type Failed struct {
	Peer jid.JID
	Err  error
}

// Failures returns a channel of failed handshakes and the function for
// xtls.Config.AcceptFailed that feeds it (it never blocks: beyond 16
// waiting, failures are dropped).
func Failures() (<-chan Failed, func(jid.JID, error)) {
	ch := make(chan Failed, 16)
	return ch, func(peer jid.JID, err error) {
		select {
		case ch <- Failed{peer, err}:
		default:
		}
	}
}

// Accept waits for the next tunnel on ln. decide hears of each handshake
// that failed meanwhile: nil goes on waiting, an error ends the wait. The
// listener is then closed and, if linger is not zero, Accept waits that
// long before it returns the error: xtls closes the failed tunnel on its
// own goroutine after reporting it, and closing the Handler at once would
// abort the tunnel before the peer had our last word (an alert, a failed
// pairing). If ctx ends first, the listener is closed and the error is
// ExitInterrupted's. A tunnel returned leaves ln open.
func Accept(ctx context.Context, ln net.Listener, failed <-chan Failed, linger time.Duration, decide func(Failed) error) (*xtls.Conn, error) {
	type accepted struct {
		conn net.Conn
		err  error
	}
	got := make(chan accepted, 1)
	go func() {
		conn, err := ln.Accept()
		got <- accepted{conn, err}
	}()
	stop := func() {
		ln.Close()
		if a := <-got; a.conn != nil {
			a.conn.Close()
		}
	}
	for {
		select {
		case a := <-got:
			if a.err != nil {
				return nil, a.err
			}
			return a.conn.(*xtls.Conn), nil
		case f := <-failed:
			err := decide(f)
			if err == nil {
				continue
			}
			stop()
			if linger > 0 {
				t := time.NewTimer(linger)
				select {
				case <-t.C:
				case <-ctx.Done():
				}
				t.Stop()
			}
			return nil, err
		case <-ctx.Done():
			stop()
			return nil, &Failure{ExitInterrupted, Why(ctx)}
		}
	}
}
