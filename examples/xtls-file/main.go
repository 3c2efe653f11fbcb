// Command xtls-file sends files and folders to another XMPP account, end to
// end encrypted, and resumes a transfer that was cut off. The receiver
// sees who sends (the sender's verified JID and key), what (names and
// total size) and says yes before anything is written.
//
// Usage:
//
//	xtls-file [flags] receive [-o DIR] [-yes] [-overwrite] [-from JID,...]
//	xtls-file [flags] send PEER PATH...
//
// For example, Bob waits and Alice sends him a folder and a file (with a
// profile that holds server, JID and password; see below):
//
//	xtls-file receive -o ~/Downloads
//	xtls-file send bob@example.org/laptop photos/ report.pdf
//
// Bob's side shows "alice@example.net/laptop (key pinned: 3F6C …) wants to
// send you 1002 files, 48.2 MiB: photos/ (1001 files), report.pdf" and asks
// "Receive? [y/N]"; -yes says yes by itself, but only to a sender whose
// key is already pinned (by an earlier transfer, or by xtls-pair). On first
// contact the receiver sees the sender's key fingerprint: compare it out of
// band; saying yes pins it. The sender pins the receiver's key on first
// contact and prints it.
//
// If the transfer is cut off (either side killed, the network lost), run
// the same two commands again: the receiver keeps what it has (a file still
// arriving is PATH.xtls-part; finished files have their names), tells the
// sender how much of each file it has and the SHA-256 of that part, and the
// sender sends only the rest of each file whose beginning matches its own
// (and a file again from the start if not). Every file ends with the
// SHA-256 of its whole content, checked by the receiver before the file
// gets its name. A folder of many small files moves in one stream, with no
// round trip per file.
//
// Progress: on a terminal, a bar with the percentage, the rate and the time
// left; otherwise (a log file, a pipe) a plain line every 5 seconds. -q
// shows nothing but errors.
//
// The receiver writes only inside -o DIR (default: the working directory):
// names from the sender are checked (relative, no "..", no links followed
// out of DIR) and an existing file that differs from the one offered is
// left alone unless -overwrite. -from lets only the listed accounts (bare
// JIDs) send; others are refused before their TLS handshake.
//
// # Flags, profile and state
//
// Flags may come before or after the command. Every xtls tool takes the
// same ones: -jid (our account), -server host:port (default: the JID's
// domain, port 5222), -ca FILE (the server's CA, if not a system one),
// -password-file FILE or -password-command CMD (or $XTLS_PASSWORD),
// -cert FILE, -profile NAME, -dir DIR, -timeout (logging in; default 30 s),
// -v (log XTLS events), -q. A profile, DIR/NAME.profile (default
// DIR/default.profile; DIR is ~/.config/xtls or $XTLS_DIR), holds the
// account's settings, one "name = value" per line:
//
//	jid              = alice@example.net/laptop
//	server           = xmpp.example.net
//	password-command = pass show xmpp/alice
//
// DIR/BARE-JID/ holds our certificate (cert.pem, made on first use) and
// the pinned keys (pins.json) that every xtls tool shares: pair once with
// xtls-pair, and xtls-file and xtls-chat trust the peer. A changed key is
// refused with the exact xtls-pins command that accepts it.
//
// # Protocol
//
// Inside the TLS tunnel (the dialer sends, the listener receives), each
// side writes frames: a type byte, a 4-byte big-endian body length, the
// body. Bodies are bounded per type (a data frame carries at most 64 KiB,
// "one block"); anything else is a protocol violation.
//
//	S→R  O  offer: JSON {"version":1,"entries":[{"path":"photos","dir":true},
//	        {"path":"photos/a.jpg","size":123,"mode":420}, ...]}
//	        paths relative, with "/", each folder before its content
//	R→S  A  accept: JSON {"have":[{"i":3,"n":65536,"sha256":"<base64>"}]}
//	        for each file the receiver has a beginning of: its length and
//	        SHA-256
//	     N  or decline: a reason (UTF-8); the sender exits with status 4
//	S→R  for each file, in manifest order, without waiting:
//	     F  file: index (4 bytes), offset (8 bytes): the sender's data
//	        starts there: the length the receiver has, if its SHA-256
//	        matches the sender's, else 0
//	     D  data: the next bytes of the file (up to 64 KiB each)
//	     E  end: index, SHA-256 of the whole file
//	S→R  Z  done: SHA-256 of all the files' SHA-256s, in order
//	R→S  K  ok: the same digest, once everything is checked and written
//	any  X  abort: a reason (UTF-8), e.g. "interrupted (terminated)"
//	any  P  keep-alive, no body, skipped by the reader: written after 15 s
//	        of silence, so that a side whose peer has gone learns it (the
//	        write fails the tunnel) instead of waiting for ever
//
// Then both close the TLS connection. A receiver killed mid-file has on
// disk everything up to the last data frame it wrote, so the next run
// sends what is missing plus at most one block.
//
// # Exit status
//
// The same in every xtls tool:
//
//	0    done
//	1    another failure (a local file, say); the receiver declined
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
	"os"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

// abortGrace bounds the last words of an interrupted side: its abort frame
// and its close.
const abortGrace = 2 * time.Second

// closeWait bounds the wait, at the end, for the peer's close of the
// tunnel.
const closeWait = 5 * time.Second

// connect logs in; tests replace it with an in-memory network's sessions.
var connect cli.ConnectFunc = cli.Connect

// transportConfig, if set, tunes the tunnels (Config.Transport). Tests of
// large transfers over the in-memory network, which has no server to
// choose the chunk size for, set larger chunks; real runs leave it to the
// Handler.
var transportConfig *transport.Config

func main() {
	ctx, stop := cli.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	cli.Options
	send      bool
	peer      jid.JID
	paths     []string
	out       string
	yes       bool
	overwrite bool
	from      []jid.JID
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, code := parse(args, stderr)
	if code >= 0 {
		return code
	}
	errw := cli.SyncWriter(stderr)
	var err error
	if o.send {
		err = send(ctx, o, errw)
	} else {
		err = receive(ctx, o, stdin, errw)
	}
	if err != nil {
		fmt.Fprintf(errw, "xtls-file: %v\n", err)
	}
	return cli.Code(err)
}

// parse parses the command line. It returns a non-negative exit status if
// the program must stop (bad usage, or -help).
func parse(args []string, stderr io.Writer) (*options, int) {
	var o options
	p := cli.NewParser("xtls-file", `usage: xtls-file [flags] receive [-o DIR] [-yes] [-overwrite] [-from JID,...]
       xtls-file [flags] send PEER PATH...`, &o.Options, stderr)
	var from string
	p.FS.StringVar(&o.out, "o", ".", "receive: the `directory` to write into")
	p.FS.BoolVar(&o.yes, "yes", false, "receive: say yes without asking, to a sender whose key is pinned")
	p.FS.BoolVar(&o.overwrite, "overwrite", false, "receive: replace existing files that differ from those offered")
	p.FS.StringVar(&from, "from", "", "receive: only these `accounts` (bare JIDs, comma-separated) may send")
	words, code := p.Parse(args, &o.Options)
	if code >= 0 {
		return nil, code
	}
	usage := func(format string, a ...any) (*options, int) { return nil, p.Usagef(format, a...) }
	self, _ := o.Self()
	var err error
	if len(words) == 0 {
		return usage("say send or receive")
	}
	switch words[0] {
	case "send":
		if len(words) < 3 {
			return usage("send takes the peer's full JID and one or more paths")
		}
		o.send = true
		if o.peer, err = cli.ParsePeer(words[1]); err != nil {
			return usage("%v", err)
		}
		if o.peer.Bare().Equal(self.Bare()) && o.peer.Equal(self) {
			return usage("send %s: that is us", o.peer)
		}
		o.paths = words[2:]
	case "receive":
		if len(words) != 1 {
			return usage("receive takes no argument (-o DIR says where)")
		}
		for _, f := range strings.Split(from, ",") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			j, err := jid.Parse(f)
			if err != nil {
				return usage("-from %q: %v", f, err)
			}
			o.from = append(o.from, j.Bare())
		}
	default:
		return usage("unknown command %q", words[0])
	}
	return &o, -1
}

// trustLine says who the peer is and how we know.
func trustLine(st xtls.State) string {
	switch st.Trust {
	case xtls.TrustFirstUse:
		return fmt.Sprintf("%s (first contact: key %s, compare it out of band)", st.Peer, st.Fingerprint)
	case xtls.TrustPinned, xtls.TrustPaired:
		return fmt.Sprintf("%s (key %s: %s)", st.Peer, st.Trust, st.Fingerprint)
	}
	return fmt.Sprintf("%s (trust %s, key %s)", st.Peer, st.Trust, st.Fingerprint)
}

// rate is n bytes in d for people.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return cli.Size(int64(float64(n)/d.Seconds())) + "/s"
}
