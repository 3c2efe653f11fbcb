package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp"

	"github.com/xmppxtls/xtls/xtls"
)

// Reconnect says how a Party logs in again when its session is lost (the
// connection dropped, the server restarted): with Connect and Login, the
// same as the first time.
//
// When the session's Serve returns and the Party was not closed, it tells
// the Handler (SessionEnded), says StatusLost, and logs in again, trying
// after ReconnectFirst, then twice as long each time up to ReconnectMax,
// for as long as the tunnels wait (Config.Reattach). It gives the Handler
// the new session (Handler.Reattach), served with the same mux, and says
// StatusResumed once the watched tunnel (Watch) has been re-attached, or
// at once if none is watched. If it cannot — no login within the bound, or
// the Handler had no tunnel left to continue — it says why with Failed and
// gives up: Gone is closed and Err returns that error.
type Reconnect struct {
	Connect ConnectFunc
	Login   Login
	// Status tells the user how the connection fares: StatusLost,
	// StatusResumed. It must not block.
	Status func(msg string)
}

// The Party's messages to the user.
const (
	StatusLost    = "connection lost, reconnecting…"
	StatusResumed = "resumed"
)

// Back-off between logins.
const (
	ReconnectFirst = 500 * time.Millisecond
	ReconnectMax   = 10 * time.Second
)

// resumePoll is how often the Party looks whether the watched tunnel has
// been re-attached (xtls has no event for it).
const resumePoll = 20 * time.Millisecond

// ReconnectError is a Party's failure to continue after its session was
// lost. Its exit status is ExitBroken.
type ReconnectError struct {
	// Lost is what ended the session.
	Lost error
	// Err is why the Party could not continue: the last login's error, or
	// the Handler's refusal of the new session.
	Err error
}

// Error implements error.
func (e *ReconnectError) Error() string {
	return fmt.Sprintf("the connection to the server was lost (%v) and could not be resumed: %v", e.Lost, e.Err)
}

// Unwrap returns why the Party could not continue.
func (e *ReconnectError) Unwrap() error { return e.Err }

// Watch names the tunnel whose re-attachment StatusResumed waits for.
func (p *Party) Watch(c *xtls.Conn) {
	p.mu.Lock()
	p.tunnel = c
	p.mu.Unlock()
}

// Gone is closed once the Party has given up reconnecting (see Err); never
// without Reconnect.
func (p *Party) Gone() <-chan struct{} { return p.gone }

// Err returns why the Party gave up reconnecting (a *ReconnectError), or
// nil.
func (p *Party) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// run waits for the current session to end and, unless the party is being
// closed, reconnects.
func (p *Party) run(ctx context.Context, ended <-chan error) {
	defer close(p.done)
	for {
		lost := <-ended
		p.Handler.SessionEnded(lost)
		if p.re == nil || p.isClosing() || ctx.Err() != nil {
			return
		}
		if lost == nil {
			lost = errors.New("the server closed the session")
		}
		p.status(StatusLost)
		var err error
		if ended, err = p.reconnect(ctx, lost); err != nil {
			if !p.isClosing() && ctx.Err() == nil {
				p.giveUp(&ReconnectError{Lost: lost, Err: err})
			}
			return
		}
	}
}

// status tells the user msg, if Reconnect has a Status.
func (p *Party) status(msg string) {
	if p.re.Status != nil {
		p.re.Status(msg)
	}
}

// isClosing reports whether Close was called.
func (p *Party) isClosing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closing
}

// giveUp records err and closes Gone.
func (p *Party) giveUp(err error) {
	p.mu.Lock()
	p.err = err
	p.mu.Unlock()
	close(p.gone)
}

// errClosing ends reconnecting when the Party is closed meanwhile.
var errClosing = errors.New("closed")

// reconnect logs in until it has a session the Handler takes, within the
// tunnels' bound, and returns what that session's Serve will return. It
// waits for the watched tunnel's re-attachment before it says so.
func (p *Party) reconnect(ctx context.Context, lost error) (<-chan error, error) {
	before, tunnel := p.reattachments()
	bound := xtls.DefaultReattach
	if p.cfg != nil && p.cfg.Reattach != 0 {
		bound = p.cfg.Reattach
	}
	deadline := time.Now().Add(bound)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	wait := ReconnectFirst
	for {
		s, err := p.re.Connect(ctx, p.re.Login)
		if err == nil {
			return p.resume(ctx, s, tunnel, before)
		}
		if ctx.Err() != nil {
			if p.isClosing() {
				return nil, errClosing
			}
			return nil, fmt.Errorf("no login within %v: %w", bound, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if p.isClosing() {
				return nil, errClosing
			}
			return nil, fmt.Errorf("no login within %v: %w", bound, err)
		}
		wait = min(2*wait, ReconnectMax)
	}
}

// reattachments returns the watched tunnel, if any, and how often it has
// been re-attached so far.
func (p *Party) reattachments() (int, *xtls.Conn) {
	p.mu.Lock()
	c := p.tunnel
	p.mu.Unlock()
	if c == nil {
		return 0, nil
	}
	return c.Reattachments(), c
}

// resume serves the new session s, gives it to the Handler and says
// StatusResumed once tunnel (if any) has been re-attached since it had
// been before times.
func (p *Party) resume(ctx context.Context, s *xmpp.Session, tunnel *xtls.Conn, before int) (<-chan error, error) {
	drop := func() {
		s.Close()
		s.Conn().Close()
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		drop()
		return nil, errClosing
	}
	p.session = s
	p.mu.Unlock()
	// The Handler takes the session before anything is read from it: an
	// IQ of the peer's that came first would find the tunnels still
	// detached and go unanswered, and the peer would wait for its
	// acknowledgement timeout.
	if err := p.Handler.Reattach(s); err != nil {
		drop()
		return nil, fmt.Errorf("no tunnel was left to continue: %w", err)
	}
	ended := p.serveSession(s)
	p.sendPresence()
	if tunnel != nil {
		t := time.NewTicker(resumePoll)
		defer t.Stop()
		for tunnel.Reattachments() <= before {
			select {
			case <-t.C:
			case <-tunnel.Tunnel().Done():
				// The tunnel failed (refused, or past the bound): the
				// application hears why from its Read or Write.
				return ended, nil
			case err := <-ended:
				// Lost again before the re-attach went through.
				again := make(chan error, 1)
				again <- err
				return again, nil
			case <-ctx.Done():
				return ended, nil
			}
		}
	}
	p.status(StatusResumed)
	return ended, nil
}

// Context returns a context that ends when ctx does or when the Party
// gives up reconnecting: for waits (Accept, Dial) that would otherwise
// outlive the Handler. Call cancel when done.
func (p *Party) Context(ctx context.Context) (_ context.Context, cancel context.CancelFunc) {
	ctx, cancel = context.WithCancel(ctx)
	go func() {
		select {
		case <-p.gone:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// NoReattach is Config.Reattach for a tool that does not log in again
// (ServeReconnecting): its tunnels fail as soon as the session ends, as a
// user of a one-shot tool expects, rather than wait for a reconnect that
// never comes.
const NoReattach = -1
