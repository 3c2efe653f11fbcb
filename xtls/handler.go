package xtls

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/xml"
	"log/slog"
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
	fails failures      // failed accepting handshakes per peer (back-off)

	proxyCache proxyCache // bytestream proxies found (proxies.go)

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
		NextProtos:    nextProtos(c.Reattach > 0), // contracts (verdict.go)
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
	h.ep.SetPeerPolicy(h.peerPolicy)
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
// err (otherwise the Handler notices within 100 ms). Tunnels that may be
// re-attached (contract 5, Config.Reattach) wait for Reattach with a new
// session; the others fail at once. Without any left to wait, the Handler
// shuts down.
func (h *Handler) SessionEnded(err error) {
	h.ep.SessionEnded(err)
}
