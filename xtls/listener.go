package xtls

import (
	"errors"
	"net"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/transport"
)

// The accept path. A peer's start meets, in the order of docs/protocol.md
// §6.2: the peer policy (S6: a Listener exists, Config.AcceptPeer), then the
// transport's limits and the Handler's (S7: back-off, then the handshake
// slots of MaxPending), then the handshake on a goroutine of its own.

// alertFlushTimeout bounds how long a failed accepting handshake waits for
// its TLS alert (or Fail verdict) to be acknowledged before it aborts the
// tunnel, so that the dialer learns why ("bad certificate").
const alertFlushTimeout = 5 * time.Second

var (
	errNotAcceptable      = stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable}
	errResourceConstraint = stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint}
)

// Listener accepts the tunnels peers open. Accept returns connections whose
// TLS handshake has completed and whose peer is trusted; the others are
// logged, reported to Config.AcceptFailed and aborted.
type Listener struct {
	h    *Handler
	ch   chan *Conn
	done chan struct{}
	once sync.Once

	// Under h.mu.
	pending int                   // tunnels not yet taken by Accept, all peers
	peers   map[string]*peerSlots // by bare JID
	closed  bool
}

// peerSlots counts one peer's tunnels not yet taken by Accept.
type peerSlots struct {
	handshaking int // handshake in progress
	waiting     int // handshake complete, waiting for Accept
}

// Listen returns the Handler's Listener, creating it if needed. Tunnels that
// peers open are refused (not-acceptable) while there is no Listener.
func (h *Handler) Listen() net.Listener {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		h.ln = &Listener{h: h, ch: make(chan *Conn, h.cfg.MaxPending), done: make(chan struct{}),
			peers: make(map[string]*peerSlots)}
	}
	return h.ln
}

// peerPolicy is the transport's peer policy (S6): it refuses a peer's start
// with not-acceptable when nobody listens or Config.AcceptPeer refuses the
// peer, before any limit is looked at. It runs on the session's Serve
// goroutine.
func (h *Handler) peerPolicy(peer jid.JID) error {
	h.mu.Lock()
	listening := !h.closed && h.ln != nil
	h.mu.Unlock()
	if !listening {
		return errNotAcceptable
	}
	if h.cfg.AcceptPeer != nil && !h.cfg.AcceptPeer(peer) {
		h.log.Info("xtls: tunnel refused", "peer", peer.String())
		return errNotAcceptable
	}
	return nil
}

// accept decides on a peer's start after the policy and the transport's
// limits (S7); it runs on the session's Serve goroutine and must not
// block: the handshake runs on its own goroutine. A refusal costs no TLS
// work.
func (h *Handler) accept(tc *transport.Conn) error {
	bare := tc.Peer().Bare().String()
	if h.fails.refused(bare, time.Now()) {
		return errResourceConstraint
	}
	h.mu.Lock()
	ln := h.ln
	if h.closed || ln == nil {
		// Closed since the policy ran.
		h.mu.Unlock()
		return errNotAcceptable
	}
	if !ln.reserve(bare) {
		h.mu.Unlock()
		return errResourceConstraint
	}
	h.hs.Add(1)
	h.mu.Unlock()
	go h.serverHandshake(ln, tc)
	return nil
}

// reserve takes a handshake slot for a tunnel of the peer bare, if the
// limits allow, under h.mu.
func (l *Listener) reserve(bare string) bool {
	cfg := &l.h.cfg
	p := l.peers[bare]
	if p == nil {
		p = &peerSlots{}
	}
	if p.handshaking >= cfg.MaxHandshakesPerPeer || p.handshaking+p.waiting >= cfg.MaxPendingPerPeer ||
		l.pending >= cfg.MaxPending {
		return false
	}
	l.peers[bare] = p
	p.handshaking++
	l.pending++
	return true
}

// release gives back a slot of the peer bare, under h.mu: a handshake
// (handshaking) or a tunnel waiting for Accept.
func (l *Listener) release(bare string, handshaking bool) {
	p := l.peers[bare]
	if p == nil {
		return
	}
	if handshaking {
		p.handshaking--
	} else {
		p.waiting--
	}
	l.pending--
	if p.handshaking == 0 && p.waiting == 0 {
		delete(l.peers, bare)
	}
}

func (h *Handler) serverHandshake(ln *Listener, tc *transport.Conn) {
	defer h.hs.Done()
	bare := tc.Peer().Bare().String()
	c := h.newConn(tc, nil)
	// crypto/tls closes the conn when the handshake's context ends: that
	// must abort the tunnel, not close it gracefully and linger.
	c.raw.abortOnClose.Store(true)
	ctx, cancel := contextWithTimeout(h.cfg.HandshakeTimeout, ln.done)
	wait := h.tuneChunk(ctx)
	err := c.Handshake(ctx)
	wait()
	cancel()
	if err != nil {
		h.acceptFailed(ln, c, err)
		return
	}
	c.raw.abortOnClose.Store(false)
	h.fails.succeeded(bare)
	h.mu.Lock()
	if ln.closed {
		ln.release(bare, true)
		h.mu.Unlock()
		c.Close()
		return
	}
	p := ln.peers[bare] // reserve made it
	p.handshaking--
	p.waiting++
	ln.ch <- c // never blocks: pending reserved the room
	h.mu.Unlock()
}

// acceptFailed ends a tunnel whose accepting handshake failed: its
// handshake slot is free at once; the failure counts against the peer; the
// peer gets the TLS alert or verdict that says why (within
// alertFlushTimeout), then an abort, which frees the transport's slot at
// once; and the failure is reported, unless a back-off is running.
func (h *Handler) acceptFailed(ln *Listener, c *Conn, err error) {
	peer := c.raw.Peer()
	if policyViolation(err) {
		err = &PolicyError{Err: err}
	}
	// Not the peer's doing: the Listener closed, or the session ended.
	closing := isDone(ln.done) || errors.Is(err, transport.ErrSessionClosed)
	report := err
	if !closing {
		report = h.fails.failed(peer, time.Now(), err)
	}
	h.mu.Lock()
	ln.release(peer.Bare().String(), true)
	h.mu.Unlock()
	tc := c.raw.Conn
	if closing {
		tc.Abort(stanza.Gone, "handshake cut short: the listener closed or the session ended")
	} else {
		ctx, cancel := contextWithTimeout(alertFlushTimeout, ln.done)
		_ = tc.Flush(ctx)
		cancel()
		tc.Abort(stanza.PolicyViolation, "handshake failed: "+err.Error())
	}
	if report == nil {
		return
	}
	var be *BackoffError
	if errors.As(report, &be) {
		h.log.Warn("xtls: handshakes of accepted tunnels keep failing: peer backed off",
			"peer", be.Peer.String(), "failures", be.Failures, "for", be.For, "last", be.Last)
	} else {
		h.log.Info("xtls: handshake of accepted tunnel failed", "peer", peer.String(), "sid", c.raw.SID(), "err", err)
	}
	if h.cfg.AcceptFailed != nil {
		h.cfg.AcceptFailed(peer, report)
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Accept waits for the next tunnel. The net.Conn is a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		l.h.mu.Lock()
		l.release(c.raw.Peer().Bare().String(), false)
		l.h.mu.Unlock()
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting: later starts are refused, tunnels waiting for
// Accept are closed, handshakes in progress are aborted.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.h.mu.Lock()
		if l.h.ln == l {
			l.h.ln = nil
		}
		l.closed = true
		l.h.mu.Unlock()
		close(l.done)
		for {
			select {
			case c := <-l.ch:
				c.Close()
				continue
			default:
			}
			break
		}
	})
	return nil
}

// Addr returns our full JID (network "xmpp").
func (l *Listener) Addr() net.Addr { return transport.Addr{JID: l.h.LocalAddr()} }
