// Package cli holds what the example programs share: logging in to a real
// XMPP server the way a client does, and running a Handler on a session.
package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// PasswordEnv is the environment variable the examples read a password
// from when no -password flag is given.
const PasswordEnv = "XTLS_PASSWORD"

// Login says how to reach a real server.
type Login struct {
	// Server is host:port of the server's client port; empty means the
	// JID's domain, port 5222.
	Server string
	// JID is the account, with or without a resource (servers may assign
	// another).
	JID string
	// Password; empty means $XTLS_PASSWORD.
	Password string
	// CAFile is a PEM file of CAs for the server's certificate; empty means
	// the system's roots.
	CAFile string
}

// Connect logs in: TCP (with xtls.QuickAck), STARTTLS (required, TLS 1.2 or newer, the server's
// certificate verified), SASL SCRAM-SHA-256 or SCRAM-SHA-1 (PLAIN only as a
// last resort, and only inside TLS), resource binding. The session's
// LocalAddr is the full JID the server bound.
func Connect(ctx context.Context, l Login) (*xmpp.Session, error) {
	addr, err := jid.Parse(l.JID)
	if err != nil {
		return nil, fmt.Errorf("bad -jid %q: %w", l.JID, err)
	}
	if addr.Localpart() == "" {
		return nil, fmt.Errorf("bad -jid %q: an account has a local part (user@domain)", l.JID)
	}
	pass := l.Password
	if pass == "" {
		pass = os.Getenv(PasswordEnv)
	}
	if pass == "" {
		return nil, errors.New("no password: give -password or set " + PasswordEnv)
	}
	server := l.Server
	if server == "" {
		server = net.JoinHostPort(addr.Domainpart(), "5222")
	} else if !strings.Contains(server, ":") {
		server = net.JoinHostPort(server, "5222")
	}
	tc := &tls.Config{ServerName: addr.Domainpart(), MinVersion: tls.VersionTLS12}
	if l.CAFile != "" {
		pem, err := os.ReadFile(l.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", l.CAFile)
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, err
	}
	// Acknowledge every read at once: an untuned server's Nagle otherwise
	// holds a stanza ~40 ms behind a delayed ACK. The Handler already does
	// this for its tunnels' IQs (Config.NoQuickAck); QuickAck covers the
	// session's other stanzas too.
	s, err := xmpp.NewClientSession(ctx, addr, xtls.QuickAck(conn),
		xmpp.StartTLS(tc),
		xmpp.SASL("", pass, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
		xmpp.BindResource(),
	)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("logging in as %s at %s: %w", addr, server, err)
	}
	return s, nil
}

// Party is a session serving an xtls Handler (and disco, so peers can tell
// that it speaks XTLS).
type Party struct {
	Session *xmpp.Session
	Handler *xtls.Handler
	served  chan error
}

// Serve registers a Handler for cfg on the session and serves it until the
// session ends. extra adds the application's own handlers.
func Serve(s *xmpp.Session, cfg *xtls.Config, extra ...mux.Option) *Party {
	p := &Party{Session: s, Handler: xtls.NewHandler(s, cfg), served: make(chan error, 1)}
	opts := append([]mux.Option{disco.Handle(), p.Handler.Handle()}, extra...)
	go func() {
		err := s.Serve(mux.New(stanza.NSClient, opts...))
		p.Handler.SessionEnded(err)
		p.served <- err
	}()
	return p
}

// Addr is the party's full JID.
func (p *Party) Addr() jid.JID { return p.Session.LocalAddr() }

// Close closes the handler's tunnels and the session, and waits for Serve
// to return.
func (p *Party) Close() error {
	p.Handler.Close()
	err := p.Session.Close()
	if cerr := p.Session.Conn().Close(); err == nil {
		err = cerr
	}
	<-p.served
	return err
}
