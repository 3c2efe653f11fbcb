// Package cli holds what the example programs share: logging in to a real
// XMPP server the way a client does, and running a Handler on a session.
package cli

import (
	"context"
	"sync"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// Party is a session serving an xtls Handler (and disco, so peers can tell
// that it speaks XTLS). With Reconnect it logs in again when its session
// is lost, and its tunnels go on from the new session.
type Party struct {
	// Handler serves the party's tunnels, from one session to the next.
	Handler *xtls.Handler

	cfg  *xtls.Config
	opts []mux.Option // every session's mux: disco, the Handler, extras
	re   *Reconnect   // nil: the party ends with its first session

	stop context.CancelFunc // ends reconnecting
	done chan struct{}      // closed when the serve loop has returned

	mu      sync.Mutex
	session *xmpp.Session // the current session
	closing bool          // Close was called: a session's end is no loss
	tunnel  *xtls.Conn    // Watch: "resumed" waits for its re-attachment
	gone    chan struct{} // closed when reconnecting gave up (err says why)
	err     error
}

// Serve registers a Handler for cfg on the session and serves it until the
// session ends. extra adds the application's own handlers.
func Serve(s *xmpp.Session, cfg *xtls.Config, extra ...mux.Option) *Party {
	return serve(context.Background(), s, cfg, nil, extra)
}

// ServeReconnecting is Serve, and when the session ends other than by
// Close, it logs in again as r says and gives the Handler the new session
// (see Reconnect), until ctx ends.
func ServeReconnecting(ctx context.Context, s *xmpp.Session, cfg *xtls.Config, r Reconnect, extra ...mux.Option) *Party {
	return serve(ctx, s, cfg, &r, extra)
}

func serve(ctx context.Context, s *xmpp.Session, cfg *xtls.Config, r *Reconnect, extra []mux.Option) *Party {
	p := &Party{Handler: xtls.NewHandler(s, cfg), cfg: cfg, re: r, session: s,
		done: make(chan struct{}), gone: make(chan struct{})}
	p.opts = append([]mux.Option{disco.Handle(), p.Handler.Handle()}, extra...)
	ctx, p.stop = context.WithCancel(ctx)
	ended := p.serveSession(s)
	go p.run(ctx, ended)
	p.sendPresence()
	return p
}

// serveSession serves s with the party's mux and returns what Serve
// returns. The mux is complete before anything reads it: our capabilities
// (SendPresence) are hashed from what it advertises.
func (p *Party) serveSession(s *xmpp.Session) <-chan error {
	m := mux.New(stanza.NSClient, p.opts...)
	ended := make(chan error, 1)
	go func() { ended <- s.Serve(m) }()
	return ended
}

// sendPresence sends available presence with our capabilities: contacts
// can then dial this program by its bare JID, and we learn theirs.
func (p *Party) sendPresence() {
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	err := p.Handler.SendPresence(ctx, stanza.Presence{}, nil)
	if err != nil && p.cfg != nil && p.cfg.Logger != nil {
		p.cfg.Logger.Debug("sending presence failed", "err", err)
	}
}

// presenceTimeout bounds sending our presence.
const presenceTimeout = 10 * time.Second

// Session is the party's current session.
func (p *Party) Session() *xmpp.Session {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.session
}

// Addr is the party's full JID (after a reconnect, the new session's).
func (p *Party) Addr() jid.JID { return p.Session().LocalAddr() }

// Close closes the handler's tunnels and the session, stops reconnecting,
// and waits for the session's Serve to return.
func (p *Party) Close() error {
	p.mu.Lock()
	p.closing = true
	s := p.session
	p.mu.Unlock()
	p.stop()
	p.Handler.Close()
	err := s.Close()
	if cerr := s.Conn().Close(); err == nil {
		err = cerr
	}
	<-p.done
	return err
}
