package harness

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/bind"
)

// JID returns the bare JID local@Domain().
func (s *Server) JID(local string) (jid.JID, error) {
	j, err := jid.New(local, s.domain, "")
	if err != nil {
		return jid.JID{}, fmt.Errorf("harness: %w", err)
	}
	return j, nil
}

// Connect logs local@Domain() in the way a real client does: a TCP
// connection to 127.0.0.1:C2SPort(), STARTTLS (required) with the server's
// certificate verified against the test CA, SASL with SCRAM-SHA-256,
// SCRAM-SHA-1 or PLAIN, and resource binding (bind.Resource). The server
// assigns the resource: the bound full JID is the session's LocalAddr().
// [Server.ConnectResource] asks for a resource instead.
//
// No -PLUS (channel-binding) mechanism is offered: ejabberd rejects mellium's
// channel binding under TLS 1.3 ("Invalid channel binding").
//
// The caller must run go session.Serve(handler): until Serve runs, no IQ
// response reaches SendIQ and incoming stanzas are not read. To end the
// session, call Close, wait for Serve to return, then close session.Conn()
// (mellium does not close the connection it was given); [ConnectT] does all of
// this.
func (s *Server) Connect(ctx context.Context, local, password string) (*xmpp.Session, error) {
	return s.ConnectWrapped(ctx, local, password, nil)
}

// ConnectWrapped is Connect with the TCP connection passed through wrap
// first (nil: unchanged), e.g. xtls.QuickAck.
func (s *Server) ConnectWrapped(ctx context.Context, local, password string, wrap func(net.Conn) net.Conn) (*xmpp.Session, error) {
	return s.ConnectVia(ctx, s.Addr(), local, password, wrap)
}

// ConnectVia is ConnectWrapped through another TCP address that leads to
// the server's client port (a latency proxy, say).
func (s *Server) ConnectVia(ctx context.Context, via, local, password string, wrap func(net.Conn) net.Conn) (*xmpp.Session, error) {
	return s.connect(ctx, via, local, "", password, wrap)
}

// ConnectResource is Connect binding the given resource: the session's
// LocalAddr() is local@Domain()/resource, or it fails with the
// *bind.Error that says what the server did instead (opts may ask for
// bind.Fallback).
func (s *Server) ConnectResource(ctx context.Context, local, resource, password string, opts ...bind.Option) (*xmpp.Session, error) {
	return s.connect(ctx, s.Addr(), local, resource, password, nil, opts...)
}

func (s *Server) connect(ctx context.Context, via, local, resource, password string, wrap func(net.Conn) net.Conn, opts ...bind.Option) (*xmpp.Session, error) {
	addr, err := s.JID(local)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", via)
	if err != nil {
		return nil, fmt.Errorf("harness: connecting %s to %s: %w", addr, s.kind, err)
	}
	if wrap != nil {
		conn = wrap(conn)
	}
	session, err := xmpp.NewClientSession(ctx, addr, conn,
		xmpp.StartTLS(&tls.Config{
			ServerName: s.domain,
			RootCAs:    s.RootCAs(),
			MinVersion: tls.VersionTLS12,
		}),
		xmpp.SASL("", password, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
		bind.Resource(resource, opts...),
	)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("harness: logging %s in to %s: %w", addr, s.kind, err)
	}
	return session, nil
}
