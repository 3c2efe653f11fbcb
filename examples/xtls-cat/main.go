// Command xtls-cat is a netcat for XMPP peers: it logs in to an XMPP
// server, opens one XTLS tunnel to a peer's full JID or accepts one, and
// copies standard input into the tunnel and the tunnel to standard output.
// The bytes are protected by TLS end to end; the servers only route them.
//
// Usage:
//
//	xtls-cat [flags] listen
//	xtls-cat [flags] dial PEER_FULL_JID
//
// For example, Bob waits for a file and Alice sends it:
//
//	export XTLS_PASSWORD=…
//	xtls-cat -jid bob@example.org/cat -cert bob.pem -pins pins.json -tofu listen > report.pdf
//	xtls-cat -jid alice@example.net/cat -cert alice.pem -pins pins.json -tofu \
//	    dial bob@example.org/cat < report.pdf
//
// Login flags: -jid (required; give a resource so that the peer knows the
// full JID to dial), -server host:port (default: the JID's domain, port
// 5222), -password (default: $XTLS_PASSWORD; prefer the variable, a flag is
// visible to other users of the machine), -ca (PEM file of CAs for the
// server's certificate; default: the system's roots).
//
// Identity and trust flags: -cert is our certificate and key in one PEM
// file, as xtls-cert writes it; without it a fresh certificate is made for
// this run and its fingerprint printed on standard error. The peer is
// trusted if its certificate chains to a CA of -peer-ca (PEM file), or its
// key is pinned for its bare JID in -pins (a pin file, see
// xtls.FilePinStore), or, with -tofu, on first use (the key is then pinned).
// -pair CODE pairs with the peer by a code both people enter (-pair new makes
// one up and prints it): the peer is then trusted and pinned only if both
// used the same code. Without -pins, -tofu and -pair keep the pins in memory
// for this run only. Without any trust flag no peer can be trusted.
//
// When standard input ends, xtls-cat closes its direction of the tunnel
// (a TLS close_notify, then the tunnel's half-close) and keeps copying the
// peer's data until the peer closes its own direction. -progress prints a
// progress line with the bytes sent and received and the rate on standard
// error, at most every 500 ms, and a summary at the end.
//
// A listener accepts one tunnel and then refuses others. A peer whose
// handshake fails on the listener's side (an untrusted key, say) is logged
// on standard error and the listener goes on waiting.
//
// Exit status:
//
//	0  the transfer completed in both directions
//	1  another failure, or interrupted
//	2  bad usage: flags, arguments, a -cert that does not name -jid
//	3  logging in to the server failed
//	4  the peer does not support XTLS, is unavailable, or refused the tunnel
//	5  the peer is not trusted: pin mismatch, wrong identity, untrusted
//	   certificate, failed pairing, TLS below policy; or a possible
//	   downgrade attack (a pinned peer answered as if it had no XTLS)
//	6  the transfer failed, or was cut short (no TLS close_notify)
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
)

// Exit codes of run.
const (
	exitOK       = 0
	exitOther    = 1
	exitUsage    = 2
	exitLogin    = 3
	exitPeer     = 4
	exitTrust    = 5
	exitTransfer = 6
)

// dialTimeout bounds opening the tunnel and the TLS handshake (and pairing).
const dialTimeout = 60 * time.Second

// peerCloseTimeout bounds how long xtls-cat waits, at the end, for the
// peer's close of the tunnel.
const peerCloseTimeout = 5 * time.Second

// stdinGrace is how long transfer waits, after a failure, for the copy of
// stdin to end.
const stdinGrace = time.Second

// progressInterval is the least time between two progress lines.
const progressInterval = 500 * time.Millisecond

// connect logs in to a real server. Tests replace it to hand out sessions of
// an in-memory network instead.
var connect = cli.Connect

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed command line.
type options struct {
	login    cli.Login
	self     jid.JID // -jid
	listen   bool
	peer     jid.JID // dial's argument
	certFile string
	pinsFile string
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
	logf := func(format string, a ...any) { fmt.Fprintf(errw, "xtls-cat: "+format+"\n", a...) }
	fail := func(code int, err error) int {
		logf("%v", err)
		return code
	}

	cfg, code, err := config(o, logf)
	if err != nil {
		return fail(code, err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(errw, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))

	s, err := connect(ctx, o.login)
	if err != nil {
		return fail(exitLogin, err)
	}
	p := cli.Serve(s, cfg)
	defer p.Close()
	logf("logged in as %s", p.Addr())

	var conn *xtls.Conn
	if o.listen {
		ln := p.Handler.Listen()
		logf("listening as %s", p.Addr())
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		c, err := ln.Accept()
		stop()
		ln.Close() // one tunnel only
		if err != nil {
			if ctx.Err() != nil {
				return fail(exitOther, errors.New("interrupted"))
			}
			return fail(exitOther, err)
		}
		conn = c.(*xtls.Conn)
	} else {
		var opts []xtls.DialOption
		if o.pair != "" {
			opts = append(opts, xtls.WithPairingCode(o.pair))
		}
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		conn, err = p.Handler.Dial(dctx, o.peer, opts...)
		cancel()
		if err != nil {
			logf("%v", err)
			var pin *xtls.PinMismatchError
			if errors.As(err, &pin) && o.pinsFile != "" {
				logf("if %s really has a new key (compare the fingerprint with them), remove the old pin from %s",
					pin.Peer.Bare(), o.pinsFile)
			}
			return dialExitCode(err)
		}
	}
	st := conn.State()
	logf("connected to %s: %s, %s, %s; trust: %s; key %s",
		st.Peer, st.VersionName(), st.CipherSuiteName(), st.CurveID, st.Trust, st.Fingerprint)

	var count counters
	var prog *progress
	if o.progress {
		prog = startProgress(errw, &count, progressInterval)
	}
	err = transfer(ctx, conn, stdin, stdout, &count)
	if err == nil {
	}
	if prog != nil {
		prog.finish(&count)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fail(exitOther, errors.New("interrupted"))
		}
		return fail(exitTransfer, err)
	}
	return exitOK
}

// parse parses the command line. It returns a non-negative exit status if
// the program must stop (bad usage, or -help).
func parse(args []string, stderr io.Writer) (*options, int) {
	fs := flag.NewFlagSet("xtls-cat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var self string
	cli.LoginFlags(fs, &o.login, &self)
	fs.StringVar(&o.certFile, "cert", "", "our certificate and key, a PEM `file` from xtls-cert (default: a fresh one for this run)")
	fs.StringVar(&o.pinsFile, "pins", "", "pin `file`: the peers' keys by bare JID")
	fs.BoolVar(&o.tofu, "tofu", false, "trust a peer with no pins on first use, and pin its key")
	fs.StringVar(&o.peerCA, "peer-ca", "", "PEM `file` of CAs that vouch for peers (PKIX)")
	fs.StringVar(&o.pair, "pair", "", "pair with the peer using `code` (\"new\": make one up and print it)")
	fs.BoolVar(&o.progress, "progress", false, "print progress on stderr")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: xtls-cat [flags] listen")
		fmt.Fprintln(stderr, "       xtls-cat [flags] dial PEER_FULL_JID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, exitOK
		}
		return nil, exitUsage
	}
	usage := func(format string, a ...any) (*options, int) {
		fmt.Fprintf(stderr, "xtls-cat: "+format+"\n", a...)
		fs.Usage()
		return nil, exitUsage
	}
	cmd, err := cli.ParseCommand(self, fs.Args())
	if err != nil {
		return usage("%v", err)
	}
	o.self, o.login.JID, o.listen, o.peer = cmd.Self, self, cmd.Listen, cmd.Peer
	return &o, -1
}

// config builds the xtls configuration the options ask for. On error it
// also returns the exit status.
func config(o *options, logf func(string, ...any)) (*xtls.Config, int, error) {
	cfg := &xtls.Config{TrustOnFirstUse: o.tofu}
	bare := o.self.Bare()
	if o.certFile != "" {
		c, err := xtls.LoadCertificatePEM(o.certFile)
		if err != nil {
			return nil, exitUsage, fmt.Errorf("-cert: %w", err)
		}
		names, err := xtls.XMPPAddrs(c.Leaf)
		if err != nil {
			return nil, exitUsage, fmt.Errorf("-cert %s: %w", o.certFile, err)
		}
		if !slices.ContainsFunc(names, func(n string) bool {
			j, err := jid.Parse(n)
			return err == nil && j.Equal(bare)
		}) {
			return nil, exitUsage, fmt.Errorf("-cert %s names %q, not %s", o.certFile, names, bare)
		}
		cfg.Certificate = c
	} else {
		c, err := xtls.GenerateCertificate(bare)
		if err != nil {
			return nil, exitOther, err
		}
		cfg.Certificate = c
		logf("no -cert: using an ephemeral certificate for %s, key %s", bare, xtls.SPKIFingerprint(c.Leaf))
	}
	if o.pinsFile != "" {
		pins, err := xtls.NewFilePinStore(o.pinsFile)
		if err != nil {
			return nil, exitUsage, fmt.Errorf("-pins: %w", err)
		}
		cfg.Pins = pins
	} else if o.tofu || o.pair != "" {
		cfg.Pins = xtls.NewMemPinStore()
		logf("no -pins: keys are pinned for this run only")
	}
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
	if !o.tofu && o.pair == "" && o.pinsFile == "" && o.peerCA == "" {
		logf("warning: no -pins, -tofu, -pair or -peer-ca: no peer can be trusted")
	}
	return cfg, 0, nil
}

// dialExitCode says which exit status a failed Dial deserves.
func dialExitCode(err error) int {
	var (
		pin     *xtls.PinMismatchError
		id      *xtls.IdentityError
		pair    *xtls.PairingError
		expired *xtls.CertificateExpiredError
		policy  *xtls.PolicyError
	)
	switch {
	case errors.Is(err, xtls.ErrNotSupported), errors.Is(err, xtls.ErrPeerUnavailable), errors.Is(err, xtls.ErrRefused):
		return exitPeer
	case errors.Is(err, xtls.ErrUntrusted), errors.Is(err, xtls.ErrNotTrustedByPeer), errors.Is(err, xtls.ErrDowngrade),
		errors.As(err, &pin), errors.As(err, &id), errors.As(err, &pair),
		errors.As(err, &expired), errors.As(err, &policy):
		return exitTrust
	}
	return exitOther
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
	awaitPeerClose(conn, peerCloseTimeout)
	return nil
}

// awaitPeerClose waits, at most d, for the tunnel under conn to be gone:
// once the peer's TLS close_notify has been read, the peer's close of the
// tunnel follows, and its Close reports an error if our session has ended
// before it could answer.
func awaitPeerClose(conn *xtls.Conn, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-conn.Tunnel().Done():
	case <-t.C:
	}
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

// progress prints a progress line now and then until finish.
type progress struct {
	w       io.Writer
	start   time.Time
	stop    chan struct{}
	done    chan struct{}
	printed bool // written by the printing goroutine, read after done
}

// startProgress starts printing the counters of n to w every interval.
// Call finish to stop it.
func startProgress(w io.Writer, n *counters, interval time.Duration) *progress {
	p := &progress{w: w, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
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
			fmt.Fprintf(p.w, "\rxtls-cat: %s   ", p.line(n, time.Since(p.start)))
			p.printed = true
		}
	}
}

// line describes the counters of n after elapsed.
func (p *progress) line(n *counters, elapsed time.Duration) string {
	s, r := n.sent.Load(), n.received.Load()
	return fmt.Sprintf("sent %s, received %s, %s", size(s), size(r), rate(s+r, elapsed))
}

// rate writes the rate of n bytes in elapsed for people.
func rate(n int64, elapsed time.Duration) string {
	if elapsed <= 0 {
		return "- B/s"
	}
	return size(int64(float64(n)/elapsed.Seconds())) + "/s"
}

// finish stops the progress line and prints the summary.
func (p *progress) finish(n *counters) {
	close(p.stop)
	<-p.done
	elapsed := time.Since(p.start)
	prefix := ""
	if p.printed {
		prefix = "\r"
	}
	s, r := n.sent.Load(), n.received.Load()
	fmt.Fprintf(p.w, "%sxtls-cat: sent %d bytes, received %d bytes in %s (%s)\n",
		prefix, s, r, elapsed.Round(time.Millisecond), rate(s+r, elapsed))
}

// size writes a byte count for people.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 3 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i])
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
