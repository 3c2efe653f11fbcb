// Package cli holds what the example programs share: logging in to a real
// XMPP server the way a client does, and running a Handler on a session.
package cli

import (
	"context"
	"time"

	"mellium.im/xmpp"
	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// Party is a session serving an xtls Handler (and disco, so peers can tell
// that it speaks XTLS).
type Party struct {
	Session *xmpp.Session
	Handler *xtls.Handler
	served  chan error
}

// Serve registers a Handler for cfg on the session and serves it until the
// session ends. extra adds the application's own handlers.
func Serve(s *xmpp.Session, cfg *xtls.Config, extra ...mux.Option) *Party {
	p := &Party{Session: s, Handler: xtls.NewHandler(s, cfg), served: make(chan error, 1)}
	opts := append([]mux.Option{disco.Handle(), p.Handler.Handle()}, extra...)
	// The mux is complete before anything reads it: our capabilities
	// (SendPresence) are hashed from what it advertises.
	m := mux.New(stanza.NSClient, opts...)
	go func() {
		err := s.Serve(m)
		p.Handler.SessionEnded(err)
		p.served <- err
	}()
	// Available presence with our capabilities: contacts can then dial
	// this program by its bare JID, and we learn theirs.
	ctx, cancel := context.WithTimeout(context.Background(), presenceTimeout)
	defer cancel()
	if cfg != nil && cfg.Logger != nil {
		if err := p.Handler.SendPresence(ctx, stanza.Presence{}, nil); err != nil {
			cfg.Logger.Debug("sending presence failed", "err", err)
		}
	} else {
		_ = p.Handler.SendPresence(ctx, stanza.Presence{}, nil)
	}
	return p
}

// presenceTimeout bounds sending our presence.
const presenceTimeout = 10 * time.Second

// Addr is the party's full JID.
func (p *Party) Addr() jid.JID { return p.Session.LocalAddr() }

// Close closes the handler's tunnels and the session, and waits for Serve
// to return.
func (p *Party) Close() error {
	p.Handler.Close()
	err := p.Session.Close()
	if cerr := p.Session.Conn().Close(); err == nil {
		err = cerr
	}
	<-p.served
	return err
}
