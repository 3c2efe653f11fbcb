package xtls

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/xml"
	"log/slog"
	"net"
	"sync"

	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/mux"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/transport"
)

// Handler offers XTLS on one XMPP session: it dials tunnels, accepts them
// through a Listener, and plugs into the session's mux with Handle.
type Handler struct {
	s   *xmpp.Session
	cfg Config
	log *slog.Logger
	ep  *transport.Endpoint

	clientTLS, serverTLS *tls.Config

	pairs pairState     // failed pairings per peer and code
	pres  presenceTable // contacts' resources, for Dial to a bare JID

	mu     sync.Mutex
	ln     *Listener
	closed bool
	hs     sync.WaitGroup // handshakes of accepted tunnels
}

// NewHandler returns a Handler for session s. cfg must carry our
// certificate. Register the Handler with Handle in the mux that serves s.
func NewHandler(s *xmpp.Session, cfg *Config) *Handler {
	c := cfg.withDefaults()
	h := &Handler{s: s, cfg: c, log: c.Logger}
	h.ep = transport.NewEndpoint(s, c.transportConfig())
	base := &tls.Config{
		Certificates:  []tls.Certificate{c.Certificate},
		MinVersion:    c.MinVersion,
		CipherSuites:  cipherSuites12,
		Renegotiation: tls.RenegotiateNever,
		NextProtos:    nextProtos, // contract 3 (verdict.go)
		Time:          c.Time,
		// Names and chains are checked by VerifyConnection (see verify):
		// crypto/x509 knows nothing of id-on-xmppAddr.
		InsecureSkipVerify: true,
	}
	h.clientTLS = base.Clone()
	h.clientTLS.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	h.serverTLS = base.Clone()
	h.serverTLS.ClientAuth = tls.RequireAnyClientCert
	var key [32]byte
	_, _ = rand.Read(key[:])
	h.serverTLS.SetSessionTicketKeys([][32]byte{key})
	h.ep.SetAcceptFunc(h.accept)
	return h
}

// Handle returns a mux option that registers the Handler for the XTLS IQs.
// Include disco.Handle() in the same mux and the feature urn:xmpp:xtls:0 is
// advertised. It also registers handlers for available and unavailable
// presence with any payload (so the application cannot register those
// patterns; a handler it registers for a specific payload hides presences
// that carry nothing else): the Handler tracks its contacts' resources for
// Dial to a bare JID, and answers disco#info for its caps node (see Caps).
func (h *Handler) Handle() mux.Option {
	return func(m *mux.ServeMux) {
		transport.HandleWith(iqHandler{h})(m)
		h.handlePresence(m)
	}
}

// iqHandler passes the XTLS IQs to the transport and advertises the disco
// feature.
type iqHandler struct{ h *Handler }

func (i iqHandler) HandleIQ(iq stanza.IQ, t xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	return i.h.ep.HandleIQ(iq, t, start)
}

func (i iqHandler) ForFeatures(node string, f func(info.Feature) error) error {
	if node != "" {
		return nil
	}
	return f(info.Feature{Var: NS})
}

// ForFeatures implements info.FeatureIter: the Handler advertises
// urn:xmpp:xtls:0.
func (h *Handler) ForFeatures(node string, f func(info.Feature) error) error {
	return iqHandler{h}.ForFeatures(node, f)
}

// LocalAddr returns the session's full JID.
func (h *Handler) LocalAddr() jid.JID { return h.ep.LocalAddr() }

// Listen returns the Handler's Listener, creating it if needed. Tunnels that
// peers open are refused (not-acceptable) while there is no Listener.
func (h *Handler) Listen() net.Listener {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		h.ln = &Listener{h: h, ch: make(chan *Conn, listenBacklog), done: make(chan struct{})}
	}
	return h.ln
}

// listenBacklog bounds the tunnels accepted (handshaking or handshaken) and
// not yet taken by Accept; beyond it starts are answered resource-constraint.
const listenBacklog = 64

// accept decides on a peer's start; it runs on the session's Serve
// goroutine and must not block: the handshake runs on its own goroutine.
func (h *Handler) accept(tc *transport.Conn) error {
	h.mu.Lock()
	ln := h.ln
	if h.closed || ln == nil {
		h.mu.Unlock()
		return stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable}
	}
	if h.cfg.AcceptPeer != nil && !h.cfg.AcceptPeer(tc.Peer()) {
		h.mu.Unlock()
		h.log.Info("xtls: tunnel refused", "peer", tc.Peer().String())
		return stanza.Error{Type: stanza.Cancel, Condition: stanza.NotAcceptable}
	}
	if ln.pending >= listenBacklog {
		h.mu.Unlock()
		return stanza.Error{Type: stanza.Wait, Condition: stanza.ResourceConstraint}
	}
	ln.pending++
	h.hs.Add(1)
	h.mu.Unlock()
	go h.serverHandshake(ln, tc)
	return nil
}

func (h *Handler) serverHandshake(ln *Listener, tc *transport.Conn) {
	defer h.hs.Done()
	c := h.newConn(tc, nil)
	ctx, cancel := contextWithTimeout(h.cfg.HandshakeTimeout, ln.done)
	wait := h.tuneChunk(ctx)
	err := c.Handshake(ctx)
	wait()
	cancel()
	if err != nil {
		if policyViolation(err) {
			err = &PolicyError{Err: err}
		}
		h.log.Info("xtls: handshake of accepted tunnel failed", "peer", tc.Peer().String(), "sid", tc.SID(), "err", err)
		h.mu.Lock()
		ln.pending--
		h.mu.Unlock()
		c.tls.Close()
		if h.cfg.AcceptFailed != nil {
			h.cfg.AcceptFailed(tc.Peer(), err)
		}
		return
	}
	h.mu.Lock()
	if ln.closed {
		ln.pending--
		h.mu.Unlock()
		c.Close()
		return
	}
	ln.ch <- c // never blocks: pending reserved the room
	h.mu.Unlock()
}

// Close closes the Listener, aborts every tunnel (condition gone) and waits
// for pending handshakes. It does not close the session.
func (h *Handler) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	ln := h.ln
	h.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	err := h.ep.Close()
	h.hs.Wait()
	return err
}

// SessionEnded tells the Handler that its session's Serve loop returned with
// err: every tunnel fails at once (otherwise within 100 ms, when the
// Handler notices).
func (h *Handler) SessionEnded(err error) {
	h.ep.SessionEnded(err)
}

// Listener accepts the tunnels peers open. Accept returns connections whose
// TLS handshake has completed and whose peer is trusted; the others are
// logged and closed.
type Listener struct {
	h       *Handler
	ch      chan *Conn
	done    chan struct{}
	once    sync.Once
	pending int  // under h.mu: accepted tunnels not yet taken by Accept
	closed  bool // under h.mu
}

// Accept waits for the next tunnel. The net.Conn is a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		l.h.mu.Lock()
		l.pending--
		l.h.mu.Unlock()
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting: later starts are refused, tunnels waiting for
// Accept are closed.
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
