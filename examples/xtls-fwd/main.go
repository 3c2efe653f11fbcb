// Command xtls-fwd forwards TCP ports between two XMPP accounts, end to
// end encrypted, as ssh -L does: every TCP connection gets its own XTLS
// tunnel, so many run at once and one slow connection does not hold up
// another.
//
// Usage:
//
//	xtls-fwd [flags] serve -allow JID[,JID...] -to HOST:PORT
//	xtls-fwd [flags] local [BIND:]PORT PEER
//	xtls-fwd [flags] stdio PEER
//
// serve waits for tunnels and connects each to HOST:PORT, and only there:
// the other side cannot choose the destination. Only the accounts listed
// in -allow (bare JIDs, or full JIDs for one device) may open a tunnel;
// others are refused before their TLS handshake. local listens on
// BIND:PORT (default BIND: 127.0.0.1; port 0 picks a free one, printed)
// and sends every connection to PEER's serve. stdio carries one
// connection on standard input and output, for ssh's ProxyCommand; it
// writes nothing on standard error unless -v, except why it failed.
//
// For example, Bob offers his SSH server to Alice, and Alice uses it:
//
//	bob$   xtls-fwd serve -allow alice@example.net -to 127.0.0.1:22
//	alice$ xtls-fwd local 2222 bob@example.org/fwd     # then: ssh -p 2222 localhost
//	alice$ ssh -o ProxyCommand='xtls-fwd -q stdio bob@example.org/fwd' bob@bobs-laptop
//
// What ssh -R does (a port on the far side that leads back to us) needs no
// mode of its own here: XMPP reaches both sides, so the side with the
// service runs serve and the other runs local, whoever starts first.
//
// Trust is as in every xtls tool: keys pinned in the shared state
// directory (pair once with xtls-pair), or pinned on first contact and
// printed; a changed key is refused with the xtls-pins command that fixes
// it. Flags (before or after the command) and the profile are those of
// every xtls tool: -jid, -server, -ca, -password-file,
// -password-command, -cert, -profile, -dir, -timeout, -v, -q; see
// xtls-file's documentation.
//
// # Exit status
//
// The same in every xtls tool (serve and local run until interrupted):
//
//	0    done
//	1    another failure (a local file, say)
//	2    bad usage: flags, arguments, profile
//	3    logging in failed: server unreachable or not XMPP, -timeout
//	     passed, its certificate did not verify, wrong password
//	4    the peer is offline, does not speak XTLS, refused us or declined
//	5    trust: the peer's key changed, pairing failed, it refused ours,
//	     or a possible downgrade (a pinned peer answered as if it had no
//	     XTLS)
//	6    the connection broke: lost, cut short, or corrupt data
//	7    the peer aborted (it was interrupted, or gave up)
//	130  interrupted here (Ctrl-C, SIGTERM, SIGHUP)
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
)

// connect logs in; tests replace it with an in-memory network's sessions.
var connect cli.ConnectFunc = cli.Connect

func main() {
	ctx, stop := cli.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	cli.Options
	mode  string // serve, local, stdio
	allow []jid.JID
	to    string
	bind  string
	peer  jid.JID
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, code := parse(args, stderr)
	if code >= 0 {
		return code
	}
	errw := cli.SyncWriter(stderr)
	f := &forwarder{o: o, errw: errw}
	var err error
	switch o.mode {
	case "serve":
		err = f.serve(ctx)
	case "local":
		err = f.local(ctx)
	case "stdio":
		err = f.stdio(ctx, stdin, stdout)
	}
	if err != nil {
		fmt.Fprintf(errw, "xtls-fwd: %v\n", err)
	}
	return cli.Code(err)
}

// parse parses the command line. It returns a non-negative exit status if
// the program must stop (bad usage, or -help).
func parse(args []string, stderr io.Writer) (*options, int) {
	var o options
	p := cli.NewParser("xtls-fwd", `usage: xtls-fwd [flags] serve -allow JID[,JID...] -to HOST:PORT
       xtls-fwd [flags] local [BIND:]PORT PEER
       xtls-fwd [flags] stdio PEER`, &o.Options, stderr)
	var allow string
	p.FS.StringVar(&allow, "allow", "", "serve: the `accounts` that may open tunnels (bare or full JIDs, comma-separated)")
	p.FS.StringVar(&o.to, "to", "", "serve: the `host:port` every tunnel is connected to")
	words, code := p.Parse(args, &o.Options)
	if code >= 0 {
		return nil, code
	}
	usage := func(format string, a ...any) (*options, int) { return nil, p.Usagef(format, a...) }
	var err error
	if len(words) == 0 {
		return usage("say serve, local or stdio")
	}
	o.mode = words[0]
	switch o.mode {
	case "serve":
		if len(words) != 1 {
			return usage("serve takes no argument: -allow and -to say what it serves")
		}
		for _, a := range strings.Split(allow, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			j, err := jid.Parse(a)
			if err != nil || j.Localpart() == "" {
				return usage("-allow %q: want user@domain[/resource]", a)
			}
			o.allow = append(o.allow, j)
		}
		if len(o.allow) == 0 {
			return usage("serve needs -allow: the accounts that may use it")
		}
		if _, _, err := net.SplitHostPort(o.to); err != nil {
			return usage("serve needs -to HOST:PORT (%v)", err)
		}
	case "local":
		if len(words) != 3 {
			return usage("local takes [BIND:]PORT and the peer's full JID")
		}
		o.bind = words[1]
		if !strings.Contains(o.bind, ":") {
			o.bind = net.JoinHostPort("127.0.0.1", o.bind)
		}
		if _, _, err := net.SplitHostPort(o.bind); err != nil {
			return usage("local %q: want [BIND:]PORT", words[1])
		}
		if o.peer, err = cli.ParsePeer(words[2]); err != nil {
			return usage("%v", err)
		}
	case "stdio":
		if len(words) != 2 {
			return usage("stdio takes the peer's full JID")
		}
		if o.peer, err = cli.ParsePeer(words[1]); err != nil {
			return usage("%v", err)
		}
	default:
		return usage("unknown command %q", o.mode)
	}
	if o.allow != nil && o.mode != "serve" || o.to != "" && o.mode != "serve" {
		return usage("-allow and -to are for serve")
	}
	return &o, -1
}
