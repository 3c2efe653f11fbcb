// Command xtls-pair pins the key of another XMPP account with a short code
// that two people read to each other, instead of comparing long
// fingerprints: one side shows a fresh code, the other types it, and each
// side pins the other's key only if both used the same code (a CPace
// exchange bound to the TLS connection, so neither the servers nor anyone
// in the middle can learn the code or test guesses offline). Then it
// connects once more, to show that the pinned key is now enough.
//
// Usage:
//
//	xtls-pair [flags] listen
//	xtls-pair [flags] dial PEER_FULL_JID
//	xtls-pair -demo
//
// On two terminals (the password comes from $XTLS_PASSWORD or -password):
//
//	# terminal 1: Bob shows a code, say 0421 7730 5918
//	XTLS_PASSWORD=… xtls-pair -jid bob@example.org/pair listen
//	# terminal 2: Alice types the code Bob reads to her
//	XTLS_PASSWORD=… xtls-pair -jid alice@example.net/pair dial bob@example.org/pair
//
// Both then print "paired with PEER: pinned FINGERPRINT", Alice connects
// again without a code, and both print "reconnected: trust pinned". A wrong
// code pins nothing: both sides say so, and exit with status 5; the code is
// then void, and the listener makes a new one when it is started again.
//
// Without a server, -demo runs both sides in this process on an in-memory
// network, once with the right code and once with a wrong one, and prints
// what each side shows.
//
// Login flags: -jid (required), -server host:port (default: the JID's
// domain, port 5222), -password (default: $XTLS_PASSWORD), -ca (PEM file
// of CAs for the server's certificate; default: the system's roots).
//
// State: -dir (default: xtls-pair in the user's configuration directory,
// e.g. ~/.config/xtls-pair) holds a directory per account, named by its
// bare JID, with cert.pem, our certificate and key, made on first use, and
// pins.json, the peers' keys (see xtls.FilePinStore). xtls-chat keeps the
// same layout, so -dir ~/.config/xtls-chat pairs for xtls-chat. -cert uses
// another certificate, a PEM file as xtls-cert writes it.
//
// Exit status:
//
//	0  paired, and reconnected with the pinned key
//	1  another failure, or interrupted
//	2  bad usage
//	3  logging in to the server failed
//	4  the peer is offline, does not speak XTLS, or refused the connection
//	5  pairing failed (a wrong code, say), or the peer is not trusted; or a
//	   possible downgrade attack (a pinned peer answered as if it had no XTLS)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
)

// Exit codes of run.
const (
	exitOK    = 0
	exitOther = 1
	exitUsage = 2
	exitLogin = 3
	exitPeer  = 4
	exitTrust = 5
)

// connectFunc logs in and returns a bound session: cli.Connect for a real
// server, an in-memory network's Session in tests and -demo.
type connectFunc func(ctx context.Context, l cli.Login) (*xmpp.Session, error)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program: it parses args, pairs, and returns the exit
// status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runWith(ctx, cli.Connect, args, stdin, stdout, stderr)
}

// runWith is run with the sessions coming from connect.
func runWith(ctx context.Context, connect connectFunc, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, code := parse(args, stderr)
	if code >= 0 {
		return code
	}
	if o.demo {
		return demo(ctx, stdout, stderr)
	}
	return pair(ctx, connect, o, stdin, stdout, stderr)
}

// options are the parsed command line.
type options struct {
	login    cli.Login
	self     jid.JID // -jid
	listen   bool
	peer     jid.JID // dial's argument
	certFile string
	dir      string
	verbose  bool
	demo     bool
}

// parse parses the command line. It returns a non-negative exit status if
// the program must stop (bad usage, or -help).
func parse(args []string, stderr io.Writer) (*options, int) {
	fs := flag.NewFlagSet("xtls-pair", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var self string
	cli.LoginFlags(fs, &o.login, &self)
	fs.StringVar(&o.certFile, "cert", "", "our certificate and key, a PEM `file` (default: DIR/BARE-JID/cert.pem, made on first use)")
	fs.StringVar(&o.dir, "dir", cli.DefaultDir("xtls-pair"), "state `directory`: our certificate and the pinned keys, per account")
	fs.BoolVar(&o.verbose, "v", false, "log XTLS events on standard error")
	fs.BoolVar(&o.demo, "demo", false, "pair two accounts on an in-memory network, with the right code and with a wrong one")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xtls-pair [flags] listen")
		fmt.Fprintln(stderr, "       xtls-pair [flags] dial PEER_FULL_JID")
		fmt.Fprintln(stderr, "       xtls-pair -demo")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK
		}
		return nil, exitUsage
	}
	usage := func(format string, a ...any) (*options, int) {
		fmt.Fprintf(stderr, "xtls-pair: "+format+"\n", a...)
		fs.Usage()
		return nil, exitUsage
	}
	if o.demo {
		if fs.NArg() > 0 || self != "" {
			return usage("-demo takes no other argument and no -jid")
		}
		return &o, -1
	}
	cmd, err := cli.ParseCommand(self, fs.Args())
	if err != nil {
		return usage("%v", err)
	}
	o.self, o.login.JID, o.listen, o.peer = cmd.Self, self, cmd.Listen, cmd.Peer
	if !o.listen {
		if o.peer.Bare().Equal(o.self.Bare()) {
			return usage("dial %s: that is our own account", o.peer)
		}
	}
	return &o, -1
}
