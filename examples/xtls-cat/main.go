// Command xtls-cat is a netcat for XMPP peers: it logs in to an XMPP
// server, opens one XTLS tunnel to a peer's full JID or accepts one, and
// copies standard input into the tunnel and the tunnel to standard output.
// The bytes are protected by TLS end to end; the servers only route them.
//
// Usage:
//
//	xtls-cat [flags] listen
//	xtls-cat [flags] dial PEER
//
// For example, Bob waits for a file and Alice sends it (each with a
// profile, or -jid and the other login flags):
//
//	xtls-cat -jid bob@example.org/cat -tofu listen > report.pdf
//	xtls-cat -jid alice@example.net/cat -tofu dial bob@example.org/cat < report.pdf
//
// For files and folders, with names, confirmation and resume, use
// xtls-file; to forward ports, xtls-fwd.
//
// Flags (before or after the command) and the profile are those of every
// xtls tool: -jid, -server, -ca, -password-file, -password-command,
// -cert, -profile, -dir, -timeout, -v (log XTLS events), -q; see
// xtls-file's documentation. Our certificate and the pinned keys are kept
// in the state directory every xtls tool shares (~/.config/xtls or
// $XTLS_DIR, one directory per account). The peer is trusted if its key is
// pinned there (by xtls-pair, say), or its certificate chains to a CA of
// -peer-ca (PEM file), or, with -tofu, on first use (the key is then
// pinned). -pair CODE pairs with the peer by a code both people enter
// (-pair new makes one up and prints it). A changed key is refused, with
// the xtls-pins command that accepts it.
//
// When standard input ends, xtls-cat closes its direction of the tunnel
// (a TLS close_notify, then the tunnel's half-close) and keeps copying the
// peer's data until the peer closes its own direction. -progress shows the
// bytes sent and received and the rate on standard error: redrawn in
// place on a terminal, a plain line every 5 seconds otherwise; and a
// summary at the end.
//
// If the connection to the server drops, xtls-cat says "connection lost,
// reconnecting…", logs in again the same way (after 0.5 s, doubling up to
// 10 s, for up to 2 minutes) and says "resumed" once the tunnel goes on
// from the new session: no byte is lost or repeated. If it cannot, it
// says why and exits with status 6.
//
// A listener accepts one tunnel and then refuses others. A peer whose
// handshake fails on the listener's side (an untrusted key, say) is logged
// on standard error and the listener goes on waiting.
//
// Exit status, the same in every xtls tool:
//
//	0    the transfer completed in both directions
//	1    another failure
//	2    bad usage: flags, arguments, profile, a -cert that does not name -jid
//	3    logging in failed: server unreachable or not XMPP, -timeout
//	     passed, its certificate did not verify, wrong password
//	4    the peer is offline, does not speak XTLS, or refused the tunnel
//	5    the peer is not trusted: key changed, wrong identity, untrusted
//	     certificate, failed pairing, TLS below policy; or a possible
//	     downgrade (a pinned peer answered as if it had no XTLS)
//	6    the transfer failed, or was cut short (no TLS close_notify)
//	7    the peer aborted (it was interrupted)
//	130  interrupted here (Ctrl-C, SIGTERM, SIGHUP)
package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
)

// Exit codes of run: the same in every xtls tool.
const (
	exitOK          = cli.ExitOK
	exitOther       = cli.ExitOther
	exitUsage       = cli.ExitUsage
	exitLogin       = cli.ExitLogin
	exitPeer        = cli.ExitPeer
	exitTrust       = cli.ExitTrust
	exitTransfer    = cli.ExitBroken
	exitAborted     = cli.ExitPeerAborted
	exitInterrupted = cli.ExitInterrupted
)

// peerCloseTimeout bounds how long xtls-cat waits, at the end, for the
// peer's close of the tunnel.
const peerCloseTimeout = 5 * time.Second

// stdinGrace is how long transfer waits, after a failure, for the copy of
// stdin to end.
const stdinGrace = time.Second

// Progress intervals: redrawn in place on a terminal, a line now and then
// elsewhere.
const (
	progressInterval = 500 * time.Millisecond
	progressLines    = 5 * time.Second
)

// connect logs in to a real server. Tests replace it to hand out sessions of
// an in-memory network instead.
var connect = cli.Connect

func main() {
	ctx, stop := cli.SignalContext(context.Background())
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	cli.Options
	self     jid.JID
	listen   bool
	peer     jid.JID // dial's argument
	tofu     bool
	peerCA   string
	pair     string
	progress bool
}

// run is the whole program: it parses args, connects, transfers, and
// returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	errw := &lockedWriter{w: stderr}
	o, code := parse(args, errw)
	if code >= 0 {
		return code
	}
	logf := func(format string, a ...any) {
		if !o.Quiet {
			fmt.Fprintf(errw, "xtls-cat: "+format+"\n", a...)
		}
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(errw, "xtls-cat: %v\n", err)
		return code
	}

	cfg, code, err := config(o, logf)
	if err != nil {
		return fail(code, err)
	}
	cfg.Logger = o.Logger(errw)

	s, err := connect(ctx, o.Login())
	if err != nil {
		if ctx.Err() != nil {
			return fail(exitInterrupted, cli.Why(ctx))
		}
		return fail(exitLogin, err)
	}
	// A lost connection is logged in again, and the tunnel goes on.
	p := cli.ServeReconnecting(ctx, s, cfg, cli.Reconnect{Connect: connect, Login: o.Login(),
		Status: func(msg string) { logf("%s", msg) }})
	defer p.Close()
	logf("logged in as %s", p.Addr())

	var conn *xtls.Conn
	// pctx also ends if the connection is lost for good.
	pctx, cancel := p.Context(ctx)
	defer cancel()
	if o.listen {
		ln := p.Handler.Listen()
		logf("listening as %s", p.Addr())
		stop := context.AfterFunc(pctx, func() { ln.Close() })
		c, err := ln.Accept()
		stop()
		ln.Close() // one tunnel only
		if err != nil {
			if perr := p.Err(); perr != nil {
				return fail(cli.Code(perr), perr)
			}
			if ctx.Err() != nil {
				return fail(exitInterrupted, cli.Why(ctx))
			}
			return fail(exitOther, err)
		}
		conn = c.(*xtls.Conn)
	} else {
		var opts []xtls.DialOption
		if o.pair != "" {
			opts = append(opts, xtls.WithPairingCode(o.pair))
		}
		if conn, err = cli.Dial(pctx, p.Handler, o.peer, &o.Options, opts...); err != nil {
			if perr := p.Err(); perr != nil {
				return fail(cli.Code(perr), perr)
			}
			return fail(cli.Code(err), err)
		}
	}
	p.Watch(conn)
	st := conn.State()
	logf("connected to %s: %s, %s, %s; trust: %s; key %s",
		st.Peer, st.VersionName(), st.CipherSuiteName(), st.CurveID, st.Trust, st.Fingerprint)

	var count counters
	var prog *progress
	if o.progress {
		prog = startProgress(errw, &count)
	}
	err = transfer(ctx, conn, stdin, stdout, &count)
	if prog != nil {
		prog.finish(&count)
	}
	if p := conn.Path(); p.Moves > 0 {
		logf("path: %s", cli.PathNote(conn))
	}
	if err != nil {
		if ctx.Err() != nil {
			cli.AbortInterrupted(conn.Tunnel(), cli.Why(ctx).Error())
			return fail(exitInterrupted, cli.Why(ctx))
		}
		if perr := p.Err(); perr != nil {
			return fail(cli.Code(perr), perr)
		}
		err = cli.StreamFailure(err, st.Peer)
		return fail(cli.Code(err), err)
	}
	return exitOK
}

// parse parses the command line. It returns a non-negative exit status if
// the program must stop (bad usage, or -help).
func parse(args []string, stderr io.Writer) (*options, int) {
	var o options
	p := cli.NewParser("xtls-cat", `usage: xtls-cat [flags] listen
       xtls-cat [flags] dial PEER`, &o.Options, stderr)
	p.FS.BoolVar(&o.tofu, "tofu", false, "trust a peer with no pins on first use, and pin its key")
	p.FS.StringVar(&o.peerCA, "peer-ca", "", "PEM `file` of CAs that vouch for peers (PKIX)")
	p.FS.StringVar(&o.pair, "pair", "", "pair with the peer using `code` (\"new\": make one up and print it)")
	p.FS.BoolVar(&o.progress, "progress", false, "print progress on stderr")
	words, code := p.Parse(args, &o.Options)
	if code >= 0 {
		return nil, code
	}
	o.self, _ = o.Self()
	var err error
	if o.listen, o.peer, err = cli.ParseListenDial(words); err != nil {
		return nil, p.Usagef("%v", err)
	}
	return &o, -1
}

// config builds the xtls configuration the options ask for. On error it
// also returns the exit status.
func config(o *options, logf func(string, ...any)) (*xtls.Config, int, error) {
	id, err := o.OpenIdentity(o.self)
	if err != nil {
		if o.CertFile != "" {
			return nil, exitUsage, fmt.Errorf("-cert: %w", err)
		}
		return nil, exitOther, err
	}
	if id.Created {
		logf("made a key for %s, kept in %s: %s", o.self.Bare(), id.CertFile, id.Fingerprint())
	}
	cfg := &xtls.Config{Certificate: id.Cert, Pins: id.Pins, TrustOnFirstUse: o.tofu}
	if o.peerCA != "" {
		pem, err := os.ReadFile(o.peerCA)
		if err != nil {
			return nil, exitUsage, fmt.Errorf("-peer-ca: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, exitUsage, fmt.Errorf("-peer-ca %s holds no PEM certificate", o.peerCA)
		}
	}
	if o.pair == "new" {
		o.pair = xtls.NewPairingCode()
		logf("pairing code: %s (the peer gives the same one to -pair)", o.pair)
	}
	if o.pair != "" {
		code := []byte(o.pair)
		cfg.PairingCode = func(jid.JID) ([]byte, bool) { return code, true }
	}
	return cfg, 0, nil
}

// counters count the bytes that crossed the tunnel.
type counters struct {
	sent, received atomic.Int64
}

// transfer copies stdin to conn and conn to stdout. When stdin ends it
// closes our direction (CloseWrite) and goes on reading until the peer
// closes its own; then it closes conn and waits a little for the peer's
// close of the tunnel, which follows its TLS close_notify: if our session
// ended first, the peer's close would be refused and the peer would report
// a failure.
//
// If sending fails, the copy of the peer's data still goes on to its end.
// If receiving fails or ctx ends, transfer closes conn, which ends the
// copies; but a copy blocked reading stdin is waited for only stdinGrace,
// and then left to end with its next write.
func transfer(ctx context.Context, conn *xtls.Conn, stdin io.Reader, stdout io.Writer, n *counters) error {
	sendDone := make(chan error, 1)
	recvDone := make(chan error, 1)
	go func() {
		// Hide stdin's WriterTo, if any, so that the copy goes in
		// chunks that the counters see.
		_, err := io.CopyBuffer(countingWriter{conn, &n.sent}, struct{ io.Reader }{stdin}, make([]byte, 32<<10))
		if err != nil {
			sendDone <- fmt.Errorf("sending: %w", err)
			return
		}
		if err := conn.CloseWrite(); err != nil {
			sendDone <- fmt.Errorf("closing our direction: %w", err)
			return
		}
		sendDone <- nil
	}()
	go func() {
		_, err := io.CopyBuffer(stdout, countingReader{conn, &n.received}, make([]byte, 32<<10))
		if err != nil {
			err = fmt.Errorf("receiving: %w", err)
		}
		recvDone <- err
	}()

	// A failed send (the peer gone, say) does not stop the copy of what
	// the peer sent before: that copy ends by itself once the tunnel is
	// gone. A failed receive, or ctx, stops everything.
	var sendErr, err error
	for recvDone != nil && err == nil {
		select {
		case sendErr = <-sendDone:
			sendDone = nil
		case err = <-recvDone:
			recvDone = nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil && sendDone != nil {
		select {
		case err = <-sendDone:
			sendDone = nil
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil {
		err = sendErr
	}
	cerr := conn.Close()
	if recvDone != nil {
		<-recvDone // Close unblocks the read
	}
	if sendDone != nil {
		// Close unblocks a write too, but not a read of stdin: give the
		// copy a moment to notice, no more.
		t := time.NewTimer(stdinGrace)
		select {
		case <-sendDone:
		case <-t.C:
		}
		t.Stop()
	}
	if err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("closing: %w", cerr)
	}
	cli.AwaitTunnel(conn, peerCloseTimeout)
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

// Write writes p and counts what was written.
func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

// Read reads into p and counts what was read.
func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// progress prints a progress line now and then until finish: redrawn in
// place on a terminal, a plain line every progressLines otherwise (never a
// carriage return into a file).
type progress struct {
	w       io.Writer
	tty     bool
	start   time.Time
	stop    chan struct{}
	done    chan struct{}
	printed bool // written by the printing goroutine, read after done
}

// startProgress starts printing the counters of n to w. Call finish to
// stop it.
func startProgress(w *lockedWriter, n *counters) *progress {
	tty, _ := cli.IsTerminal(w.w)
	p := &progress{w: w, tty: tty, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	interval := progressLines
	if tty {
		interval = progressInterval
	}
	go p.watch(n, interval)
	return p
}

// watch prints n every interval until p.stop is closed.
func (p *progress) watch(n *counters, interval time.Duration) {
	defer close(p.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			if p.tty {
				fmt.Fprintf(p.w, "\rxtls-cat: %s\x1b[K", p.line(n, time.Since(p.start)))
				p.printed = true
			} else {
				fmt.Fprintf(p.w, "xtls-cat: %s\n", p.line(n, time.Since(p.start)))
			}
		}
	}
}

// line describes the counters of n after elapsed.
func (p *progress) line(n *counters, elapsed time.Duration) string {
	s, r := n.sent.Load(), n.received.Load()
	return fmt.Sprintf("sent %s, received %s, %s", cli.Size(s), cli.Size(r), rate(s+r, elapsed))
}

// rate writes the rate of n bytes in elapsed for people.
func rate(n int64, elapsed time.Duration) string {
	if elapsed <= 0 {
		return "- B/s"
	}
	return cli.Size(int64(float64(n)/elapsed.Seconds())) + "/s"
}

// finish stops the progress line and prints the summary.
func (p *progress) finish(n *counters) {
	close(p.stop)
	<-p.done
	elapsed := time.Since(p.start)
	prefix := ""
	if p.printed {
		prefix = "\r\x1b[K"
	}
	s, r := n.sent.Load(), n.received.Load()
	fmt.Fprintf(p.w, "%sxtls-cat: sent %d bytes (%s), received %d bytes (%s) in %s (%s)\n",
		prefix, s, cli.Size(s), r, cli.Size(r), elapsed.Round(time.Millisecond), rate(s+r, elapsed))
}

// lockedWriter serializes writes: the progress line, the log and the
// messages share stderr.
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
