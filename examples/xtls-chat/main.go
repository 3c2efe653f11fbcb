// Command xtls-chat is a terminal chat between two XMPP accounts, end to end
// encrypted: the two programs open an XTLS tunnel (TLS whose records travel
// as Base64 inside IQ stanzas) and run an XMPP stream inside it, so every
// line typed becomes a <message type='chat'/> that the servers route but
// can neither read nor alter.
//
// Usage:
//
//	xtls-chat [flags] listen
//	xtls-chat [flags] dial PEER
//	xtls-chat -demo
//
// On two terminals, Bob waits and Alice calls him (both accounts on real
// servers; the password comes from $XTLS_PASSWORD, -password-file,
// -password-command or the profile):
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
// WARNING naming the pinned and the presented keys and the exact commands
// that accept the new key (xtls-pins accept PEER 'FINGERPRINT', once the
// other person has read it to you) or forget the old one, and xtls-chat
// refuses to continue (exit status 5).
//
// Instead of comparing fingerprints, the two people can pair with a short
// code: the listener, started with -pair new, prints a fresh code that its
// user reads to the other person, who dials with -pair CODE (or both give
// the same code). Only if both used the same code is each key pinned. A
// listener whose caller typed a wrong code goes on waiting, so the caller
// can try again; after three wrong codes the code is used up.
//
//	xtls-chat -jid bob@example.org/chat -pair new listen
//	xtls-chat -jid alice@example.net/chat -pair '0421 7730 5918' dial bob@example.org/chat
//
// In the chat, a line typed is sent when Enter is pressed, and the peer's
// lines are shown as "bob@example.org> text". On a terminal the line being
// typed is edited in place (golang.org/x/term): a message that arrives is
// written above it, and the half-typed line stays intact below; Ctrl-C or
// Ctrl-D on an empty line leaves. /quit (or the end of
// standard input) ends the chat for both: closing the inner XMPP session
// closes the TLS connection and the tunnel. A line that starts with / is
// sent as it is if the / is doubled ("//shrug").
//
// If the connection to the server drops, the chat shows "*** connection
// lost, reconnecting…", logs in again (for up to 2 minutes) and shows
// "*** resumed" once the chat goes on from the new session; lines typed
// meanwhile are sent then. If it cannot, it says why and exits with status
// 6.
//
// Flags (before or after the command) and the profile are those of every
// xtls tool: -jid, -server, -ca, -password-file, -password-command, -cert,
// -profile, -dir, -timeout, -v (log XTLS events), -q; see xtls-file's
// documentation. The state directory (~/.config/xtls or $XTLS_DIR) holds
// our certificate and the pinned keys per account, shared with xtls-pair,
// xtls-file and xtls-fwd: pair once, and every tool trusts the peer.
//
// For scripts, -loopback DIR runs two instances in this process on an
// in-memory network: alice@example.net/chat listens and bob@example.org/chat
// dials it, with state under DIR/state, and their standard input and output
// are the named pipes DIR/alice.in, DIR/alice.out, DIR/bob.in and
// DIR/bob.out, which the script makes with mkfifo and opens in that order
// (see chat_test.sh).
//
// Exit status, the same in every xtls tool:
//
//	0    the chat ended with /quit, or the peer left
//	1    another failure
//	2    bad usage: flags, arguments, profile
//	3    logging in failed: server unreachable or not XMPP, -timeout
//	     passed, its certificate did not verify, wrong password
//	4    the peer is offline, does not speak XTLS, or refused the chat
//	5    trust: the peer's key changed, the fingerprints were not
//	     confirmed, pairing failed, or the peer hung up before the chat
//	     started (it refused our key, say); or a possible downgrade (a
//	     pinned peer answered as if it had no XTLS)
//	6    the chat broke off
//	130  interrupted here (Ctrl-C, SIGTERM, SIGHUP)
package main

import (
	"context"
	"io"
	"os"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
)

// Exit codes of run: the same in every xtls tool.
const (
	exitOK          = cli.ExitOK
	exitOther       = cli.ExitOther
	exitUsage       = cli.ExitUsage
	exitLogin       = cli.ExitLogin
	exitPeer        = cli.ExitPeer
	exitTrust       = cli.ExitTrust
	exitLost        = cli.ExitBroken
	exitInterrupted = cli.ExitInterrupted
)

func main() {
	ctx, stop := cli.SignalContext(context.Background())
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
func runWith(ctx context.Context, connect cli.ConnectFunc, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
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
	cli.Options
	self     jid.JID
	listen   bool
	peer     jid.JID // dial's argument
	pair     string  // a code, or "new"
	demo     bool
	loopback string
}

// parse parses the command line. It returns a non-negative exit status if
// the program must stop (bad usage, or -help).
func parse(args []string, stderr io.Writer) (*options, int) {
	var o options
	p := cli.NewParser("xtls-chat", `usage: xtls-chat [flags] listen
       xtls-chat [flags] dial PEER
       xtls-chat -demo`, &o.Options, stderr)
	p.FS.StringVar(&o.pair, "pair", "", "pair on first contact with `code` instead of comparing fingerprints (listen: \"new\" prints a fresh one)")
	p.FS.BoolVar(&o.demo, "demo", false, "play a scripted chat between two instances on an in-memory network")
	p.FS.StringVar(&o.loopback, "loopback", "", "run two instances on an in-memory network, talking through the named pipes in `dir` (for scripts)")
	words, code := p.ParseFlags(args)
	if code >= 0 {
		return nil, code
	}
	usage := func(format string, a ...any) (*options, int) { return nil, p.Usagef(format, a...) }
	if o.demo || o.loopback != "" {
		if o.demo && o.loopback != "" {
			return usage("-demo or -loopback, not both")
		}
		if len(words) > 0 || o.JID != "" {
			return usage("-demo and -loopback take no other argument and no -jid")
		}
		return &o, -1
	}
	if err := o.Resolve(); err != nil {
		return usage("%v", err)
	}
	self, err := o.Self()
	if err != nil {
		return usage("%v", err)
	}
	o.self = self
	if o.listen, o.peer, err = cli.ParseListenDial(words); err != nil {
		return usage("%v", err)
	}
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
