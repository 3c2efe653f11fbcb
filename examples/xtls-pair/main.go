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
//	xtls-pair [flags] dial PEER
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
// again without a code, and both print "reconnected: trust pinned".
//
// Without a server, -demo runs both sides in this process on an in-memory
// network, once with the right code and once with a wrong one, and prints
// what each side shows.
//
// Flags (before or after the command) and the profile are those of every
// xtls tool: -jid, -server, -ca, -password-file, -password-command, -cert,
// -profile, -dir, -timeout, -v (log XTLS events), -q; see xtls-file's
// documentation. The keys are pinned in the state directory that every
// xtls tool shares (~/.config/xtls or $XTLS_DIR, one directory per
// account): once paired, xtls-chat, xtls-file and xtls-fwd trust the peer.
//
// A wrong code pins nothing: both sides say so, the dialer asks for the
// code again, and the listener goes on waiting; after three wrong codes
// the code is used up, both sides exit with status 5, and the listener
// makes a new code when it is started again.
//
// Exit status, the same in every xtls tool:
//
//	0    paired, and reconnected with the pinned key
//	1    another failure
//	2    bad usage: flags, arguments, profile
//	3    logging in failed: server unreachable or not XMPP, -timeout
//	     passed, its certificate did not verify, wrong password
//	4    the peer is offline, does not speak XTLS, or refused the connection
//	5    pairing failed (three wrong codes, say), the peer is not trusted,
//	     or a possible downgrade (a pinned peer answered as if it had no
//	     XTLS)
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
	exitInterrupted = cli.ExitInterrupted
)

func main() {
	ctx, stop := cli.SignalContext(context.Background())
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
func runWith(ctx context.Context, connect cli.ConnectFunc, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
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
	cli.Options
	self   jid.JID
	listen bool
	peer   jid.JID // dial's argument
	demo   bool
}

// parse parses the command line. It returns a non-negative exit status if
// the program must stop (bad usage, or -help).
func parse(args []string, stderr io.Writer) (*options, int) {
	var o options
	p := cli.NewParser("xtls-pair", `usage: xtls-pair [flags] listen
       xtls-pair [flags] dial PEER
       xtls-pair -demo`, &o.Options, stderr)
	p.FS.BoolVar(&o.demo, "demo", false, "pair two accounts on an in-memory network, with the right code and with a wrong one")
	words, code := p.ParseFlags(args)
	if code >= 0 {
		return nil, code
	}
	usage := func(format string, a ...any) (*options, int) { return nil, p.Usagef(format, a...) }
	if o.demo {
		if len(words) > 0 || o.JID != "" {
			return usage("-demo takes no other argument and no -jid")
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
	if !o.listen && o.peer.Bare().Equal(o.self.Bare()) {
		return usage("dial %s: that is our own account", o.peer)
	}
	return &o, -1
}
