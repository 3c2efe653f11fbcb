package cli

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// DialTimeout bounds opening a tunnel, the TLS handshake and pairing.
const DialTimeout = 60 * time.Second

// ParsePeer checks a peer address given on the command line: a full JID,
// user@domain/resource. (Once Dial takes a bare JID, so will this.)
func ParsePeer(s string) (jid.JID, error) {
	peer, err := jid.Parse(s)
	if err != nil || peer.Localpart() == "" {
		return jid.JID{}, fmt.Errorf("peer %q: want user@domain (a contact's XTLS client is found by its presence) or user@domain/resource", s)
	}
	return peer, nil
}

// Dial opens a tunnel to peer within DialTimeout. It is the one dial
// function of the programs: choosing a resource for a bare JID, and the
// bytestream path, plug in here. Its errors are *Failure values with the
// exit status and a message for people (see DialFailure); an interrupted
// dial is ExitInterrupted.
func Dial(ctx context.Context, h *xtls.Handler, peer jid.JID, o *Options, opts ...xtls.DialOption) (*xtls.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	conn, err := h.Dial(dctx, peer, opts...)
	if err == nil {
		return conn, nil
	}
	if ctx.Err() != nil {
		return nil, &Failure{ExitInterrupted, Why(ctx)}
	}
	return nil, DialFailure(err, peer, o)
}

// ConnectFunc logs in and returns a bound session: Connect for a real
// server, NetworkConnect for an in-memory network.
type ConnectFunc func(ctx context.Context, l Login) (*xmpp.Session, error)

// NetworkConnect hands out sessions of an in-memory network, by the full
// JID of the login. When an instance has just ended, the network may not
// have noticed yet that its session is closed, and then the address is
// still taken; NetworkConnect then ends that session from the network's
// side, which frees the address at once.
func NetworkConnect(network *xtlstest.Network) ConnectFunc {
	return func(ctx context.Context, l Login) (*xmpp.Session, error) {
		addr, err := jid.Parse(l.JID)
		if err != nil {
			return nil, err
		}
		s, err := network.Session(ctx, addr)
		if errors.Is(err, xtlstest.ErrAddrInUse) {
			network.Disconnect(addr, stream.Error{})
			s, err = network.Session(ctx, addr)
		}
		return s, err
	}
}

// NewResources wraps connect for tests: every login of an account after
// the first binds another resource (RESOURCE2, RESOURCE3…), as a server
// may while it still holds the old one.
//
// xtls-chat's reconnect test uses it (a new resource); xtls-cat's logs in
// with the same full JID again, the other case a server may choose.
func NewResources(connect ConnectFunc) ConnectFunc {
	var mu sync.Mutex
	logins := map[string]int{}
	return func(ctx context.Context, l Login) (*xmpp.Session, error) {
		mu.Lock()
		logins[l.JID]++
		if n := logins[l.JID]; n > 1 {
			l.JID = fmt.Sprintf("%s%d", l.JID, n)
		}
		mu.Unlock()
		return connect(ctx, l)
	}
}

// Start logs in with connect and serves cfg's Handler on the session. Its
// errors are *Failure values: ExitLogin, or ExitInterrupted if ctx ended.
func Start(ctx context.Context, connect ConnectFunc, o *Options, cfg *xtls.Config) (*Party, error) {
	s, err := connect(ctx, o.Login())
	if err != nil {
		if ctx.Err() != nil {
			return nil, &Failure{ExitInterrupted, Why(ctx)}
		}
		return nil, &Failure{ExitLogin, err}
	}
	return Serve(s, cfg), nil
}

// AwaitTunnel waits, at most d, until the tunnel under conn is gone: both
// directions closed, or failed. Closing the Handler before would abort a
// tunnel whose peer has not closed its side yet.
func AwaitTunnel(conn *xtls.Conn, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-conn.Tunnel().Done():
	case <-t.C:
	}
}
