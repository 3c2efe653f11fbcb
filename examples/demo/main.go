// Command demo shows XTLS at work: TLS end to end between two XMPP clients,
// its records carried as Base64 inside IQ stanzas.
//
// With no flags it needs nothing but Go: it builds an in-memory XMPP network
// (package xtlstest), connects alice@example.net/phone and
// bob@example.org/laptop, gives each a fresh certificate naming its bare JID,
// and has Alice open a tunnel to Bob twice. For each connection it prints the
// negotiated TLS version, cipher suite and key exchange group, whether the
// session was resumed, how each side decided to trust the other (first use,
// then pinned), and one message each way:
//
//	go run ./examples/demo
//	go run ./examples/demo -trace   # also print the stanzas on the wire
//
// Through a real server, run it twice, on two accounts (or two resources
// of one account). The first process listens, the second dials the first's
// full JID:
//
//	XTLS_PASSWORD=… go run ./examples/demo -server xmpp.example.org:5222 \
//	    -ca ca.pem -jid bob@example.org/demo -listen
//	XTLS_PASSWORD=… go run ./examples/demo -server xmpp.example.org:5222 \
//	    -ca ca.pem -jid alice@example.net/demo -peer bob@example.org/demo
//
// Each process uses a fresh certificate and trusts the other on first use
// (pins are kept in memory only), so the second of the two connections
// shows a pinned, and usually resumed, session. -ca is the PEM file of the
// CAs for the server's certificate (default: the system's roots); -server
// defaults to the JID's domain, port 5222; the password comes from
// -password or $XTLS_PASSWORD. A listener given -peer accepts only that peer.
//
// Exit status: 0 when both connections worked; 1 when the demo failed
// (a tunnel could not be opened or trusted, a message was lost); 2 for bad
// usage; 3 when logging in to the server failed (as in every xtls tool:
// -timeout bounds it, default 30 s). Ctrl-C, SIGTERM and SIGHUP end it.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// Exit codes of run.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
	exitLogin  = 3
)

// connections is how many tunnels the demo opens one after the other: the
// first trusts on first use, the second finds the key pinned.
const connections = 2

// exchangeTimeout bounds each connection of the demo: dialing, the messages
// and the close.
const exchangeTimeout = 30 * time.Second

// Addresses of the in-memory demo.
var (
	aliceJID = jid.MustParse("alice@example.net/phone")
	bobJID   = jid.MustParse("bob@example.org/laptop")
)

// connect logs in to a real server. Tests replace it to hand out sessions of
// an in-memory network instead.
var connect = cli.Connect

func main() {
	ctx, stop := cli.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program: it parses args, runs the demo and returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		trace  = fs.Bool("trace", false, "print the stanzas on the wire (Base64 shortened)")
		login  cli.Login
		peer   = fs.String("peer", "", "full JID of the peer to dial (or, with -listen, the only peer accepted)")
		listen = fs.Bool("listen", false, "wait for the peer's tunnels instead of dialing")
	)
	fs.StringVar(&login.Server, "server", "", "server `host:port` (default: the JID's domain, port 5222)")
	fs.StringVar(&login.JID, "jid", "", "account to log in with, user@domain[/resource]; without it the demo runs in memory")
	fs.StringVar(&login.Password, "password", "", "password (default: $"+cli.PasswordEnv+")")
	fs.StringVar(&login.CAFile, "ca", "", "PEM `file` of CAs for the server's certificate (default: system roots)")
	fs.DurationVar(&login.Timeout, "timeout", cli.DefaultTimeout, "give up logging in after this `duration`")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: demo [-trace]")
		fmt.Fprintln(stderr, "       demo [-trace] [-server host:port] [-ca file] -jid user@domain/res -listen [-peer jid]")
		fmt.Fprintln(stderr, "       demo [-trace] [-server host:port] [-ca file] -jid user@domain/res -peer user@domain/res")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "demo: "+format+"\n", a...)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected argument %q", fs.Arg(0))
	}
	out := &lockedWriter{w: stdout}

	if login.JID == "" {
		if login.Server != "" || login.Password != "" || login.CAFile != "" || *peer != "" || *listen {
			return usage("-server, -password, -ca, -peer and -listen need -jid")
		}
		if err := runLocal(ctx, out, *trace); err != nil {
			fmt.Fprintln(stderr, "demo:", err)
			return exitFailed
		}
		return exitOK
	}

	var peerJID jid.JID
	if *peer != "" {
		j, err := cli.ParsePeer(*peer)
		if err != nil {
			return usage("-peer: %v", err)
		}
		peerJID = j
	}
	if !*listen && peerJID.String() == "" {
		return usage("give -listen, or -peer with the full JID to dial")
	}
	s, err := connect(ctx, login)
	if err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return exitLogin
	}
	if err := runRemote(ctx, out, s, peerJID, *listen, *trace); err != nil {
		fmt.Fprintln(stderr, "demo:", err)
		return exitFailed
	}
	return exitOK
}

// runLocal is the in-memory demo: both parties in this process.
func runLocal(ctx context.Context, out io.Writer, trace bool) (err error) {
	var opts []xtlstest.Option
	if trace {
		opts = append(opts, xtlstest.Trace(func(s xtlstest.Stanza) {
			label := s.From.Localpart() + " -> " + s.To.Localpart() + ":"
			fmt.Fprintf(out, "    %-14s %s\n", label, shortenStanza(s.Raw))
		}))
	}
	network := xtlstest.NewNetwork(opts...)
	defer network.Close()

	fmt.Fprintln(out, "XTLS demo: two XMPP clients on an in-memory network (no server needed).")
	fmt.Fprintln(out, "TLS runs end to end between them; its records travel as Base64 inside IQ stanzas.")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Certificates (fresh keys, self-signed, naming the bare JID), SHA-256 SPKI fingerprints:")
	alice, err := newLocalParty(ctx, network, aliceJID, out)
	if err != nil {
		return err
	}
	defer closeParty(alice, &err)
	bob, err := newLocalParty(ctx, network, bobJID, out)
	if err != nil {
		return err
	}
	defer closeParty(bob, &err)
	fmt.Fprintln(out)
	if trace {
		fmt.Fprintln(out, "Stanzas are shown as the network routes them, without their from and to.")
		fmt.Fprintln(out, "<data/> carries TLS records in Base64: Fg... starts a handshake record (0x16),")
		fmt.Fprintln(out, "Fw... application data (0x17), FA... change_cipher_spec (0x14), FQ... an alert (0x15).")
		fmt.Fprintln(out)
	}

	ln := bob.Handler.Listen()
	defer ln.Close()
	for i := 1; i <= connections; i++ {
		fmt.Fprintf(out, "Connection %d: %s dials %s\n", i, aliceJID, bobJID)
		accepted := make(chan outcome, 1)
		go func() { accepted <- acceptOne(ctx, bob.Party) }()
		d := dialOne(ctx, alice.Party, bobJID)
		if d.err != nil {
			ln.Close() // unblocks acceptOne
			<-accepted
			return d.err
		}
		a := <-accepted
		if a.err != nil {
			return a.err
		}
		printTLS(out, d.state)
		printTrust(out, d.state, bob.cert)
		printTrust(out, a.state, alice.cert)
		printMessage(out, d.state.Local, d.state.Peer, a.received)
		printMessage(out, d.state.Peer, d.state.Local, d.received)
		fmt.Fprintln(out)
	}
	if !trace {
		fmt.Fprintln(out, "Run with -trace to see the stanzas on the wire.")
	}
	return nil
}

// runRemote is the demo through a real server: this process is one of the
// two parties.
func runRemote(ctx context.Context, out io.Writer, s *xmpp.Session, peer jid.JID, listen, trace bool) (err error) {
	if trace {
		// A real session has no network to ask; mellium can log the raw
		// stream instead, but that is not the same view. Say so.
		fmt.Fprintln(out, "(-trace shows the stanzas only in the in-memory demo)")
	}
	local := s.LocalAddr()
	cert, err := xtls.GenerateCertificate(local)
	if err != nil {
		s.Close()
		s.Conn().Close()
		return err
	}
	cfg := &xtls.Config{Certificate: cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true}
	if listen && peer.String() != "" {
		cfg.AcceptPeer = func(j jid.JID) bool { return j.Equal(peer) }
	}
	p := cli.Serve(s, cfg)
	defer func() {
		// The peer's last close may still be in our Serve loop.
		if cerr := p.Close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	}()
	fmt.Fprintf(out, "Logged in as %s.\n", local)
	fmt.Fprintf(out, "My certificate (fresh key, self-signed), SHA-256 SPKI fingerprint:\n  %s\n\n", xtls.SPKIFingerprint(cert.Leaf))

	if listen {
		ln := p.Handler.Listen()
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		defer ln.Close()
		fmt.Fprintf(out, "Listening. On the other machine, with your -server and -ca, run:\n  demo -jid YOU@DOMAIN/RESOURCE -peer %s\n\n", local)
		for i := 1; i <= connections; i++ {
			a := acceptOne(ctx, p)
			if a.err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return a.err
			}
			fmt.Fprintf(out, "Connection %d: %s dialed %s\n", i, a.state.Peer, local)
			printTLS(out, a.state)
			printTrust(out, a.state, nil)
			printMessage(out, a.state.Peer, local, a.received)
			printMessage(out, local, a.state.Peer, a.sent)
			fmt.Fprintln(out)
		}
		return nil
	}
	for i := 1; i <= connections; i++ {
		fmt.Fprintf(out, "Connection %d: %s dials %s\n", i, local, peer)
		d := dialOne(ctx, p, peer)
		if d.err != nil {
			return d.err
		}
		printTLS(out, d.state)
		printTrust(out, d.state, nil)
		printMessage(out, local, peer, d.sent)
		printMessage(out, peer, local, d.received)
		fmt.Fprintln(out)
	}
	return nil
}

// localParty is one client of the in-memory demo.
type localParty struct {
	*cli.Party
	cert *certInfo
}

// certInfo is what the demo knows of a party's certificate.
type certInfo struct {
	fp xtls.Fingerprint
}

// newLocalParty connects addr to the network with a fresh certificate, pins
// kept in memory and trust on first use, and prints the fingerprint.
func newLocalParty(ctx context.Context, n *xtlstest.Network, addr jid.JID, out io.Writer) (*localParty, error) {
	cert, err := xtls.GenerateCertificate(addr)
	if err != nil {
		return nil, err
	}
	s, err := n.Session(ctx, addr)
	if err != nil {
		return nil, err
	}
	p := cli.Serve(s, &xtls.Config{Certificate: cert, Pins: xtls.NewMemPinStore(), TrustOnFirstUse: true})
	ci := &certInfo{fp: xtls.SPKIFingerprint(cert.Leaf)}
	fmt.Fprintf(out, "  %-18s %s\n", addr.Bare(), ci.fp)
	return &localParty{Party: p, cert: ci}, nil
}

// closeParty closes p and records the first error in *err.
func closeParty(p *localParty, err *error) {
	if cerr := p.Close(); *err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		*err = cerr
	}
}

// outcome is what one side of a connection saw.
type outcome struct {
	state          xtls.State
	sent, received string
	err            error
}

// greeting is the message from to sends through the tunnel.
func greeting(from, to jid.JID) string {
	return fmt.Sprintf("hello %s, this is %s", to.Localpart(), from.Localpart())
}

// dialOne opens a tunnel to peer, sends a greeting, closes its direction,
// and reads the peer's answer up to the peer's close.
func dialOne(ctx context.Context, p *cli.Party, peer jid.JID) outcome {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	conn, err := p.Handler.Dial(ctx, peer)
	if err != nil {
		return outcome{err: err}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(exchangeTimeout))
	o := outcome{state: conn.State()}
	o.sent = greeting(o.state.Local, o.state.Peer)
	if _, err := io.WriteString(conn, o.sent); err != nil {
		return outcome{err: fmt.Errorf("sending to %s: %w", peer, err)}
	}
	if err := conn.CloseWrite(); err != nil {
		return outcome{err: fmt.Errorf("closing our direction to %s: %w", peer, err)}
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		return outcome{err: fmt.Errorf("reading from %s: %w", peer, err)}
	}
	o.received = string(got)
	if err := conn.Close(); err != nil {
		return outcome{err: fmt.Errorf("closing the tunnel to %s: %w", peer, err)}
	}
	cli.AwaitTunnel(conn, peerCloseTimeout)
	return o
}

// peerCloseTimeout bounds the wait for the peer's close of the tunnel.
const peerCloseTimeout = 5 * time.Second

// acceptOne accepts a tunnel on p's Listener, reads the peer's message up
// to its close, answers with a greeting and closes.
func acceptOne(ctx context.Context, p *cli.Party) outcome {
	ln := p.Handler.Listen()
	c, err := ln.Accept()
	if err != nil {
		return outcome{err: err}
	}
	conn := c.(*xtls.Conn)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(exchangeTimeout))
	o := outcome{state: conn.State()}
	got, err := io.ReadAll(conn)
	if err != nil {
		return outcome{err: fmt.Errorf("reading from %s: %w", o.state.Peer, err)}
	}
	o.received = string(got)
	o.sent = greeting(o.state.Local, o.state.Peer)
	if _, err := io.WriteString(conn, o.sent); err != nil {
		return outcome{err: fmt.Errorf("answering %s: %w", o.state.Peer, err)}
	}
	if err := conn.Close(); err != nil {
		return outcome{err: fmt.Errorf("closing the tunnel from %s: %w", o.state.Peer, err)}
	}
	cli.AwaitTunnel(conn, peerCloseTimeout)
	return o
}

// printTLS prints the negotiated TLS parameters of st.
func printTLS(out io.Writer, st xtls.State) {
	fmt.Fprintf(out, "  %-20s %s\n", "TLS version:", st.VersionName())
	fmt.Fprintf(out, "  %-20s %s\n", "cipher suite:", st.CipherSuiteName())
	group := st.CurveID.String()
	if st.CurveID == 0 {
		group = "none"
	} else if strings.Contains(group, "MLKEM") {
		group += " (hybrid post-quantum)"
	}
	fmt.Fprintf(out, "  %-20s %s\n", "key exchange:", group)
	resumed := "no (full handshake, certificates exchanged)"
	if st.Resumed {
		resumed = "yes (abbreviated handshake with the first connection's session ticket)"
	}
	fmt.Fprintf(out, "  %-20s %s\n", "resumed:", resumed)
}

// printTrust prints what the local end of st saw of its peer and how it
// trusted it. If want is known, the key seen is checked against it.
func printTrust(out io.Writer, st xtls.State, want *certInfo) {
	me, them := st.Local.Localpart(), st.Peer.Localpart()
	check := ""
	if want != nil {
		check = " (matches " + them + "'s certificate)"
		if st.Fingerprint != want.fp {
			check = " (DOES NOT MATCH " + them + "'s certificate)"
		}
	}
	fmt.Fprintf(out, "  %-20s %s%s\n", me+" sees key:", st.Fingerprint, check)
	fmt.Fprintf(out, "  %-20s %s\n", me+" trusts "+them+":", describeTrust(st))
}

// describeTrust explains the trust decision recorded in st.
func describeTrust(st xtls.State) string {
	bare := st.Peer.Bare()
	switch st.Trust {
	case xtls.TrustFirstUse:
		return fmt.Sprintf("%s (no key was pinned for %s; this one is now)", st.Trust, bare)
	case xtls.TrustPinned:
		return fmt.Sprintf("%s (the key pinned for %s)", st.Trust, bare)
	case xtls.TrustPKIX:
		return fmt.Sprintf("%s (the certificate chains to a trusted CA)", st.Trust)
	case xtls.TrustPaired:
		return fmt.Sprintf("%s (both ends proved the same pairing code; key pinned)", st.Trust)
	case xtls.TrustApplication:
		return fmt.Sprintf("%s (accepted by the application)", st.Trust)
	}
	return st.Trust.String()
}

// printMessage prints a message that went from one party to another.
func printMessage(out io.Writer, from, to jid.JID, msg string) {
	fmt.Fprintf(out, "  %-20s %q\n", from.Localpart()+" -> "+to.Localpart()+":", msg)
}

// Parts of a serialized stanza that shortenStanza rewrites.
var (
	// longText is character data of 33 Base64 characters or more.
	longText = regexp.MustCompile(`>([A-Za-z0-9+/]{33,}={0,2})<`)
	// routing is the namespace every stanza of a client stream has, and the
	// addresses, which the trace shows apart.
	routing = regexp.MustCompile(` (xmlns=["']jabber:client["']|from=("[^"]*"|'[^']*')|to=("[^"]*"|'[^']*'))`)
	// emptyElement is an element with nothing between its tags.
	emptyElement = regexp.MustCompile(`<([a-z]+)( [^<>]*)?></([a-z]+)>`)
)

// shortenStanza makes a stanza fit on a line: long Base64 text is cut to
// its first 24 characters and the size of what it encodes, the client
// namespace and the from and to attributes are dropped, and empty elements
// are written <e/>.
func shortenStanza(raw []byte) string {
	s := routing.ReplaceAllString(string(raw), "")
	s = longText.ReplaceAllStringFunc(s, func(m string) string {
		b64 := m[1 : len(m)-1]
		n := base64.StdEncoding.DecodedLen(len(b64)) - strings.Count(b64, "=")
		return fmt.Sprintf(">%s...[%d bytes]<", b64[:24], n)
	})
	return emptyElement.ReplaceAllStringFunc(s, func(m string) string {
		sub := emptyElement.FindStringSubmatch(m)
		if sub[1] != sub[3] {
			return m
		}
		return "<" + sub[1] + sub[2] + "/>"
	})
}

// lockedWriter serializes writes: the network's trace and the report share
// the output.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// Write writes p to the underlying writer, alone.
func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
