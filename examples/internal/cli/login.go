package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/bind"
	"github.com/xmppxtls/xtls/xtls"
)

// PasswordEnv is the environment variable the programs read a password
// from when no -password, -password-file or -password-command is given.
const PasswordEnv = "XTLS_PASSWORD"

// Login says how to reach a real server.
type Login struct {
	// Server is host:port of the server's client port; empty means the
	// JID's domain, port 5222.
	Server string
	// JID is the account, with or without a resource (servers may assign
	// another).
	JID string
	// Password, or else $XTLS_PASSWORD, or else the first line of
	// PasswordFile, or else what PasswordCommand prints.
	Password        string
	PasswordFile    string
	PasswordCommand string
	// CAFile is a PEM file of CAs for the server's certificate; empty means
	// the system's roots.
	CAFile string
	// Timeout bounds the whole login; zero means DefaultTimeout.
	Timeout time.Duration
}

// password finds the password.
func (l Login) password(ctx context.Context) (string, error) {
	switch {
	case l.Password != "":
		return l.Password, nil
	case os.Getenv(PasswordEnv) != "":
		return os.Getenv(PasswordEnv), nil
	case l.PasswordFile != "":
		data, err := os.ReadFile(l.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		line, _, _ := strings.Cut(string(data), "\n")
		if line = strings.TrimRight(line, "\r"); line == "" {
			return "", fmt.Errorf("password file %s: the first line is empty", l.PasswordFile)
		}
		return line, nil
	case l.PasswordCommand != "":
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, "sh", "-c", l.PasswordCommand)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("password command %q: %w: %s", l.PasswordCommand, err, strings.TrimSpace(stderr.String()))
		}
		line, _, _ := strings.Cut(string(out), "\n")
		if line = strings.TrimRight(line, "\r"); line == "" {
			return "", fmt.Errorf("password command %q printed no password", l.PasswordCommand)
		}
		return line, nil
	}
	return "", errors.New("no password: set $" + PasswordEnv + ", or give -password-file or -password-command (or put one in the profile)")
}

// LoginError is a failed login, with a hint for the user.
type LoginError struct {
	JID, Server string
	Err         error
	// Hint says what to do about it, or is empty.
	Hint string
}

// Error implements error.
func (e *LoginError) Error() string {
	s := fmt.Sprintf("logging in as %s at %s: %v", e.JID, e.Server, e.Err)
	if e.Hint != "" {
		s += "\n  " + e.Hint
	}
	return s
}

// Unwrap returns the cause.
func (e *LoginError) Unwrap() error { return e.Err }

// Connect logs in: TCP (with xtls.QuickAck), STARTTLS (required, TLS 1.2 or newer, the server's
// certificate verified), SASL SCRAM-SHA-256 or SCRAM-SHA-1 (PLAIN only as a
// last resort, and only inside TLS), resource binding. The session's
// LocalAddr is the full JID the server bound. All of it must be done
// within l.Timeout: a port that accepts and says nothing, or says
// something else than XMPP, fails in time with a *LoginError that says so.
// So does a server certificate that does not verify, with a hint about -ca.
//
// It is the one login function of the programs: resource binding that
// honours the requested resource plugs in here.
func Connect(ctx context.Context, l Login) (*xmpp.Session, error) {
	addr, err := jid.Parse(l.JID)
	if err != nil {
		return nil, fmt.Errorf("bad -jid %q: %w", l.JID, err)
	}
	if addr.Localpart() == "" {
		return nil, fmt.Errorf("bad -jid %q: an account has a local part (user@domain)", l.JID)
	}
	timeout := l.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pass, err := l.password(ctx)
	if err != nil {
		return nil, err
	}
	server := l.Server
	if server == "" {
		server = net.JoinHostPort(addr.Domainpart(), "5222")
	} else if _, _, err := net.SplitHostPort(server); err != nil {
		server = net.JoinHostPort(server, "5222")
	}
	tc := &tls.Config{ServerName: addr.Domainpart(), MinVersion: tls.VersionTLS12}
	if l.CAFile != "" {
		pem, err := os.ReadFile(l.CAFile)
		if err != nil {
			return nil, fmt.Errorf("-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca %s holds no PEM certificate", l.CAFile)
		}
	}
	fail := func(err error) error {
		return &LoginError{JID: addr.String(), Server: server, Err: err, Hint: loginHint(ctx, err, timeout, addr, l.CAFile)}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, fail(err)
	}
	// mellium does not bound its reads by ctx: the deadline does, and
	// closing the connection if ctx ends first.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	// Acknowledge every read at once: an untuned server's Nagle otherwise
	// holds a stanza ~40 ms behind a delayed ACK. The Handler already does
	// this for its tunnels' IQs (Config.NoQuickAck); QuickAck covers the
	// session's other stanzas too.
	s, err := xmpp.NewClientSession(ctx, addr, xtls.QuickAck(conn),
		xmpp.StartTLS(tc),
		xmpp.SASL("", pass, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
		// mellium's BindResource asks for no resource at all, so the
		// server picked a random one and nobody could dial the name the
		// user gave (see package bind). A server that refuses the name
		// (one already in use, with some configurations) gets its own
		// choice, which the programs print.
		bind.Resource(addr.Resourcepart(), bind.Fallback()),
	)
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fail(err)
	}
	conn.SetDeadline(time.Time{})
	return s, nil
}

// loginHint says what a failed login probably means.
func loginHint(ctx context.Context, err error, timeout time.Duration, addr jid.JID, caFile string) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		syntax   *xml.SyntaxError
		netErr   net.Error
	)
	switch {
	case errors.As(err, &hostname):
		return fmt.Sprintf("the server's certificate does not name %s: is -server the server of that domain?", addr.Domainpart())
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &verify):
		if caFile != "" {
			return fmt.Sprintf("the server's certificate does not verify with the CAs of %s", caFile)
		}
		return "the server's certificate does not verify with the system's CAs: if the server has its own CA, give its PEM file with -ca FILE (or ca = FILE in the profile)"
	case ctx.Err() != nil, errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("no XMPP answer within %v (-timeout): is -server the client port of an XMPP server (usually 5222)?", timeout)
	case errors.As(err, &syntax), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		strings.Contains(err.Error(), "xmpp: unexpected"):
		return "the server did not answer as an XMPP server: is -server the client port of an XMPP server (usually 5222)?"
	case strings.Contains(err.Error(), "not-authorized"):
		return "the server refused the account or the password"
	}
	return ""
}
