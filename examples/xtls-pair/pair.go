package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/examples/internal/cli"
	"github.com/xmppxtls/xtls/xtls"
)

// dialTimeout bounds opening a tunnel, the TLS handshake and pairing.
const dialTimeout = 60 * time.Second

// peerCloseTimeout bounds how long the listener waits for the dialer to
// close a connection.
const peerCloseTimeout = 30 * time.Second

// tunnelCloseTimeout bounds the wait, after a close, for the tunnel to be
// closed in both directions: closing the Handler earlier would abort it.
const tunnelCloseTimeout = time.Second

// failGrace is how long a listener whose pairing failed stays up before
// it exits: xtls closes the failed tunnel on its own goroutine after
// reporting the failure, and closing the Handler meanwhile would abort the
// tunnel before the peer had our last word.
const failGrace = time.Second

// pairer is one run: what it prints to, and its state.
type pairer struct {
	o     *options
	out   io.Writer
	errw  io.Writer
	id    *cli.Identity
	party *cli.Party
	// failed receives the handshakes of tunnels peers opened that failed.
	failed <-chan cli.Failed
	// lastWrong says that the last dial failed for a wrong pairing code.
	lastWrong bool
}

// say prints a line.
func (p *pairer) say(format string, a ...any) {
	fmt.Fprintf(p.out, format+"\n", a...)
}

// fail prints an error and returns code.
func (p *pairer) fail(code int, format string, a ...any) int {
	fmt.Fprintf(p.errw, "xtls-pair: "+format+"\n", a...)
	return code
}

// pair runs the program as the options say.
func pair(ctx context.Context, connect cli.ConnectFunc, o *options, stdin io.Reader, stdout, stderr io.Writer) int {
	p := &pairer{o: o, out: cli.SyncWriter(stdout), errw: cli.SyncWriter(stderr)}
	failed, acceptFailed := cli.Failures()
	p.failed = failed
	id, err := o.OpenIdentity(o.self)
	if err != nil {
		if o.CertFile != "" {
			return p.fail(exitUsage, "-cert: %v", err)
		}
		return p.fail(exitOther, "%v", err)
	}
	p.id = id
	cfg := &xtls.Config{
		Certificate: id.Cert,
		Pins:        id.Pins,
		// A tunnel the peer opened whose handshake or pairing failed never
		// reaches Accept; AcceptFailed says why.
		AcceptFailed: acceptFailed,
		Logger:       o.Logger(p.errw),
		Reattach:     cli.NoReattach,
	}
	var code string
	var used atomic.Bool // the code has paired: it is not good for another
	if o.listen {
		code = xtls.NewPairingCode()
		cfg.PairingCode = func(jid.JID) ([]byte, bool) {
			if used.Load() {
				return nil, false
			}
			return []byte(code), true
		}
	}

	s, err := connect(ctx, o.Login())
	if err != nil {
		if ctx.Err() != nil {
			return p.fail(exitInterrupted, "%v", cli.Why(ctx))
		}
		return p.fail(exitLogin, "%v", err)
	}
	p.party = cli.Serve(s, cfg)
	defer p.party.Close()
	p.say("logged in as %s", p.party.Addr())
	if id.Created {
		p.say("made a key for %s, kept in %s", o.self.Bare(), id.CertFile)
	}
	p.say("your key: %s", id.Fingerprint())
	if o.listen {
		return p.listen(ctx, code, &used)
	}
	return p.dial(ctx, stdin)
}

// listen shows the code, accepts the pairing, then the reconnection.
func (p *pairer) listen(ctx context.Context, code string, used *atomic.Bool) int {
	ln := p.party.Handler.Listen()
	defer ln.Close()
	p.say("pairing code: %s", code)
	p.say("read it to the other person, who runs  xtls-pair -jid THEIR_JID dial %s  and types it", p.party.Addr())
	p.say("waiting...")
	conn, status := p.accept(ctx, ln, jid.JID{})
	if conn == nil {
		return status
	}
	st := conn.State()
	peer := st.Peer.Bare()
	if st.Trust != xtls.TrustPaired {
		conn.Close()
		return p.fail(exitTrust, "%s connected without pairing (trust: %s)", st.Peer, st.Trust)
	}
	used.Store(true)
	p.say("paired with %s: pinned %s", peer, st.Pinned)
	if err := p.drain(ctx, conn); err != nil {
		return p.fail(exitOther, "%v", err)
	}

	for {
		conn, status = p.accept(ctx, ln, peer)
		if conn == nil {
			return status
		}
		if st = conn.State(); st.Peer.Bare().Equal(peer) {
			break
		}
		// Someone pinned in an earlier run: not the reconnection awaited.
		p.say("%s connected; still waiting for %s", st.Peer, peer)
		conn.Close()
	}
	err := p.drain(ctx, conn)
	if st.Trust != xtls.TrustPinned {
		return p.fail(exitTrust, "%s reconnected, trust: %s; want pinned", st.Peer, st.Trust)
	}
	p.say("reconnected: trust %s", st.Trust)
	if err != nil {
		return p.fail(exitOther, "%v", err)
	}
	return exitOK
}

// accept waits for the next tunnel. A failed pairing ends the wait, when
// it is with from (any peer if from is the zero JID); other failures are
// reported. It returns the connection or, if there is none, the exit
// status.
func (p *pairer) accept(ctx context.Context, ln net.Listener, from jid.JID) (*xtls.Conn, int) {
	wrong := 0 // wrong codes so far
	conn, err := cli.Accept(ctx, ln, p.failed, failGrace, func(f cli.Failed) error {
		var pe *xtls.PairingError
		switch {
		case errors.As(f.Err, &pe) && pe.Reason == xtls.PairingWrongCode && wrong < cli.PairingTries-1:
			// The other side may try again, until the code is used up.
			wrong++
			p.say("pairing with %s failed: wrong code: %s typed another code than ours; nothing was pinned. "+
				"It may try again (%d more); still waiting", pe.Peer.Bare(), pe.Peer.Bare(), cli.PairingTries-wrong)
		case errors.As(f.Err, &pe) && (from.String() == "" || f.Peer.Bare().Equal(from)):
			return cli.Fail(exitTrust, "%s", pairingMessage(pe, false))
		default:
			p.say("a connection from %s failed (%v); still waiting", f.Peer, f.Err)
		}
		return nil
	})
	if err != nil {
		return nil, p.fail(cli.Code(err), "%v", err)
	}
	return conn, exitOK
}

// drain reads conn until the peer closes its direction, then closes
// conn.
func (p *pairer) drain(ctx context.Context, conn *xtls.Conn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetReadDeadline(time.Now().Add(peerCloseTimeout))
	_, err := io.Copy(io.Discard, conn)
	if cerr := conn.Close(); err == nil {
		err = cerr
	}
	cli.AwaitTunnel(conn, tunnelCloseTimeout)
	if ctx.Err() != nil {
		return cli.Why(ctx)
	}
	if err != nil {
		return fmt.Errorf("waiting for %s to close: %w", conn.State().Peer, err)
	}
	return nil
}

// dial asks for the code, pairs, then connects again without it.
func (p *pairer) dial(ctx context.Context, stdin io.Reader) int {
	peer := p.o.peer
	p.say("type the pairing code that %s shows, then Enter:", peer)
	lines := bufio.NewReader(stdin)
	var conn *xtls.Conn
	for try := 1; conn == nil; try++ {
		line, err := readLine(ctx, lines)
		if ctx.Err() != nil {
			return p.fail(exitInterrupted, "%v", cli.Why(ctx))
		}
		code := strings.TrimSpace(line)
		if code == "" {
			if err != nil {
				return p.fail(exitOther, "no code typed: nothing paired (%v)", err)
			}
			return p.fail(exitOther, "no code typed: nothing paired")
		}
		var status int
		conn, status = p.connect(ctx, xtls.WithPairingCode(code))
		if conn == nil && (!p.lastWrong || try == cli.PairingTries) {
			return status
		}
		if conn == nil {
			p.say("type the code again (%d more tries), then Enter:", cli.PairingTries-try)
		}
	}
	st := conn.State()
	if st.Trust != xtls.TrustPaired {
		conn.Close()
		return p.fail(exitTrust, "%s was trusted without pairing (%s)", peer, st.Trust)
	}
	p.say("paired with %s: pinned %s", peer.Bare(), st.Pinned)
	closeConn(conn)

	conn, status := p.connect(ctx)
	if conn == nil {
		return status
	}
	st = conn.State()
	closeConn(conn)
	if st.Trust != xtls.TrustPinned {
		return p.fail(exitTrust, "reconnected to %s, trust: %s; want pinned", peer, st.Trust)
	}
	p.say("reconnected: trust %s", st.Trust)
	return exitOK
}

// connect dials the peer. It returns the connection or, if there is none,
// the exit status.
func (p *pairer) connect(ctx context.Context, opts ...xtls.DialOption) (*xtls.Conn, int) {
	peer := p.o.peer
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := p.party.Handler.Dial(dctx, peer, opts...)
	if err == nil {
		return conn, exitOK
	}
	var wrong *xtls.PairingError
	p.lastWrong = errors.As(err, &wrong) && wrong.Reason == xtls.PairingWrongCode
	var (
		pe  *xtls.PairingError
		pin *xtls.PinMismatchError
	)
	switch {
	case ctx.Err() != nil:
		return nil, p.fail(exitInterrupted, "%v", cli.Why(ctx))
	case errors.As(err, &pe):
		return nil, p.fail(exitTrust, "%s", pairingMessage(pe, true))
	case errors.As(err, &pin):
		return nil, p.fail(exitTrust, "%s presented another key than the one pinned just now: %v", peer, err)
	case errors.Is(err, xtls.ErrDowngrade):
		return nil, p.fail(exitTrust, "%v", err)
	case errors.Is(err, xtls.ErrRefused):
		return nil, p.fail(exitPeer, "%s refused the connection: is xtls-pair listening there? (%v)", peer, err)
	case errors.Is(err, xtls.ErrPeerUnavailable):
		return nil, p.fail(exitPeer, "%s is not online (is the full JID right, resource included?)", peer)
	case errors.Is(err, xtls.ErrNotSupported):
		return nil, p.fail(exitPeer, "%s does not speak XTLS", peer)
	}
	return nil, p.fail(exitTrust, "%v", err)
}

// closeConn ends conn gracefully: it closes our direction only, reads
// until the peer closes its own (see drain), then closes conn. Had it
// closed both directions at once, it would have stopped reading, and the
// peer's close_notify would have been refused.
func closeConn(conn *xtls.Conn) {
	if conn.CloseWrite() == nil {
		conn.SetReadDeadline(time.Now().Add(peerCloseTimeout))
		io.Copy(io.Discard, conn)
	}
	conn.Close()
	cli.AwaitTunnel(conn, tunnelCloseTimeout)
}

// readLine reads a line of r, unless ctx ends first (the read then goes on
// in the background until r ends).
func readLine(ctx context.Context, r *bufio.Reader) (string, error) {
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := r.ReadString('\n')
		ch <- result{line, err}
	}()
	select {
	case res := <-ch:
		return res.line, res.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// pairingMessage says in words why pairing failed; dialer says which side
// we are.
func pairingMessage(e *xtls.PairingError, dialer bool) string {
	peer := e.Peer.Bare()
	switch e.Reason {
	case xtls.PairingWrongCode:
		if dialer {
			return fmt.Sprintf("pairing with %s failed: wrong code: the code typed here is not the one %s shows. "+
				"Nothing was pinned; %s makes a new code when it starts listening again.", peer, peer, peer)
		}
		return fmt.Sprintf("pairing with %s failed: wrong code: %s typed another code than ours. "+
			"Nothing was pinned, and this code is void: start again for a new one.", peer, peer)
	case xtls.PairingCodeDead:
		return fmt.Sprintf("pairing with %s failed: the code is used up (it failed three times): make a new one.", peer)
	case xtls.PairingNoCode:
		if dialer {
			return fmt.Sprintf("pairing with %s failed: it has no pairing code (for us) any more: start its listener again.", peer)
		}
		return fmt.Sprintf("pairing with %s failed: our code is used already.", peer)
	case xtls.PairingRequired:
		return fmt.Sprintf("%s did not pair: start it with dial, which asks for the code.", peer)
	}
	return fmt.Sprintf("pairing with %s failed: %v", peer, e)
}
