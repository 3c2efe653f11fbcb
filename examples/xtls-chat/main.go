// Command xtls-chat is a terminal chat between two XMPP accounts, end to end
// encrypted: the two programs open an XTLS tunnel (TLS whose records travel
// as Base64 inside IQ stanzas) and run an XMPP stream inside it, so every
// line typed becomes a <message type='chat'/> that the servers route but
// can neither read nor alter.
//
// Usage:
//
//	xtls-chat [flags] listen
//	xtls-chat [flags] dial PEER_FULL_JID
//	xtls-chat -demo
//
// On two terminals, Bob waits and Alice calls him (both accounts on real
// servers; the password comes from $XTLS_PASSWORD or -password):
//
//	# terminal 1
//	XTLS_PASSWORD=… xtls-chat -jid bob@example.org/chat listen
//	# terminal 2
//	XTLS_PASSWORD=… xtls-chat -jid alice@example.net/chat dial bob@example.org/chat
//
// Without a server, -demo plays a scripted chat between two instances on an
// in-memory network and prints what each side sees.
//
// On connecting, each side prints the TLS version, cipher suite and key
// exchange group. On first contact each side prints the other's key
// fingerprint and its own, and asks to compare them out of band (read them
// to each other on the phone, or side by side): typing yes pins the peer's
// key in the pin file, so that the next chat starts without a question;
// anything else hangs up and pins nothing. No message is sent or shown
// before that. A peer whose key has changed since it was pinned gets a loud
// WARNING naming the pinned and the presented keys, and xtls-chat refuses
// to continue (exit status 5) unless it was started with -accept-new-key,
// which replaces the pin.
//
// Instead of comparing fingerprints, the two people can pair with a short
// code: the listener, started with -pair new, prints a fresh code that its
// user reads to the other person, who dials with -pair CODE (or both give
// the same code). Only if both used the same code is each key pinned.
//
//	xtls-chat -jid bob@example.org/chat -pair new listen
//	xtls-chat -jid alice@example.net/chat -pair '0421 7730 5918' dial bob@example.org/chat
//
// In the chat, a line typed is sent when Enter is pressed, and the peer's
// lines are shown as "bob@example.org> text". /quit (or the end of
// standard input) ends the chat for both: closing the inner XMPP session
// closes the TLS connection and the tunnel. A line that starts with / is
// sent as it is if the / is doubled ("//shrug").
//
// Login flags: -jid (required), -server host:port (default: the JID's
// domain, port 5222), -password (default: $XTLS_PASSWORD), -ca (PEM file
// of CAs for the server's certificate; default: the system's roots).
//
// State: -dir (default: xtls-chat in the user's configuration directory,
// e.g. ~/.config/xtls-chat) holds a directory per account, named by its
// bare JID, with cert.pem, our certificate and key, made on first use, and
// pins.json, the peers' keys (see xtls.FilePinStore). -cert uses another
// certificate, a PEM file as xtls-cert writes it.
//
// -v logs XTLS events (refused tunnels, rejected certificates) on
// standard error.
//
// For scripts, -loopback DIR runs two instances in this process on an
// in-memory network: alice@example.net/chat listens and bob@example.org/chat
// dials it, with state under DIR/state, and their standard input and output
// are the named pipes DIR/alice.in, DIR/alice.out, DIR/bob.in and
// DIR/bob.out, which the script makes with mkfifo and opens in that order
// (see chat_test.sh).
//
// Exit status:
//
//	0  the chat ended with /quit, or the peer left
//	1  another failure, or interrupted
//	2  bad usage
//	3  logging in to the server failed
//	4  the peer is offline, does not speak XTLS, or refused the chat
//	5  the peer is not trusted: its key changed, the fingerprints were not
//	   confirmed, or pairing failed; or the peer hung up before the chat
//	   started (it refused our key, say); or a possible downgrade attack
//	   (a pinned peer answered as if it had no XTLS)
//	6  the chat broke off
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
	exitLost  = 6
)

// connectFunc logs in and returns a bound session: cli.Connect for a real
// server, an in-memory network's Session in tests, -demo and -loopback.
type connectFunc func(ctx context.Context, l cli.Login) (*xmpp.Session, error)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program: it parses args, chats, and returns the exit
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
	switch {
	case o.demo:
		return demo(ctx, stdout, stderr)
	case o.loopback != "":
		return loopback(ctx, o.loopback, stderr)
	}
	return chat(ctx, connect, o, stdin, stdout, stderr)
}

// options are the parsed command line.
type options struct {
	login        cli.Login
	self         jid.JID // -jid
	listen       bool
	peer         jid.JID // dial's argument
	certFile     string
	dir          string
	pair         string // a code, or "new"
	acceptNewKey bool
	verbose      bool
	demo         bool
	loopback     string
}

// parse parses the command line. It returns a non-negative exit status if
// the program must stop (bad usage, or -help).
func parse(args []string, stderr io.Writer) (*options, int) {
	fs := flag.NewFlagSet("xtls-chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var self string
	cli.LoginFlags(fs, &o.login, &self)
	fs.StringVar(&o.certFile, "cert", "", "our certificate and key, a PEM `file` (default: DIR/BARE-JID/cert.pem, made on first use)")
	fs.StringVar(&o.dir, "dir", cli.DefaultDir("xtls-chat"), "state `directory`: our certificate and the pinned keys, per account")
	fs.StringVar(&o.pair, "pair", "", "pair on first contact with `code` instead of comparing fingerprints (listen: \"new\" prints a fresh one)")
	fs.BoolVar(&o.acceptNewKey, "accept-new-key", false, "accept a peer whose key changed since it was pinned, and pin the new key")
	fs.BoolVar(&o.verbose, "v", false, "log XTLS events on standard error")
	fs.BoolVar(&o.demo, "demo", false, "play a scripted chat between two instances on an in-memory network")
	fs.StringVar(&o.loopback, "loopback", "", "run two instances on an in-memory network, talking through the named pipes in `dir` (for scripts)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xtls-chat [flags] listen")
		fmt.Fprintln(stderr, "       xtls-chat [flags] dial PEER_FULL_JID")
		fmt.Fprintln(stderr, "       xtls-chat -demo")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK
		}
		return nil, exitUsage
	}
	usage := func(format string, a ...any) (*options, int) {
		fmt.Fprintf(stderr, "xtls-chat: "+format+"\n", a...)
		fs.Usage()
		return nil, exitUsage
	}
	if o.demo || o.loopback != "" {
		if o.demo && o.loopback != "" {
			return usage("-demo or -loopback, not both")
		}
		if fs.NArg() > 0 || self != "" {
			return usage("-demo and -loopback take no other argument and no -jid")
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
		if o.pair == "new" {
			return usage("-pair new is for the listener, which shows the code; give dial the code it showed")
		}
	}
	return &o, -1
}
