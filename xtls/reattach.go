package xtls

import (
	"errors"

	"mellium.im/xmpp"
)

// Contract 5 (ALPN "xmpp-xtls/5") is contract 4 with re-attachment
// (docs/protocol.md §8.2): a tunnel outlives the XMPP session of either end.
// Both ends derive the tunnel's re-attach key from the TLS exporter once
// the verdict is through; when a session ends, the tunnels of both ends
// wait (Config.Reattach) instead of failing, and the end that comes back
// from a new session proves with that key, from its new full JID, that it
// holds the TLS session. No TLS handshake happens again; the servers, who
// see the re-attach IQ, can neither forge one nor move a tunnel to another
// JID. Ends offer contract 5 only while Config.Reattach allows it.

// alpnContract5 is the ALPN protocol ID of contract 5.
const alpnContract5 = "xmpp-xtls/5"

// reattachLabel is the TLS exporter label of the re-attach key.
const reattachLabel = "EXPORTER-urn:xmpp:xtls:0 reattach"

// allowReattach derives the tunnel's re-attach key and hands it to the
// transport (contract 5).
func (c *Conn) allowReattach() error {
	cs := c.tls.ConnectionState()
	key, err := cs.ExportKeyingMaterial(reattachLabel, nil, 32)
	if err != nil {
		return err
	}
	c.raw.AllowReattach(key)
	return nil
}

// Reattachments returns how many times the tunnel has been re-attached:
// continued from a new XMPP session of ours or of the peer's.
func (c *Conn) Reattachments() int { return c.raw.Reattachments() }

// ErrHandlerClosed is returned by Reattach on a closed Handler.
var ErrHandlerClosed = errors.New("xtls: the Handler is closed")

// Reattach gives the Handler a new session of the same account after its
// session ended (call SessionEnded first, with what Serve returned). Build
// the new session's mux with the Handler's Handle, as for the first; the
// full JID may differ (a new resource). The tunnels that were waiting
// (Config.Reattach) go on from the new full JID once their peers take
// their re-attach; Dial and the Listener use the new session from now on.
//
// It fails with ErrHandlerClosed on a closed Handler, with
// transport.ErrOtherAccount for another account's session, and with the
// error that ended the last session if no tunnel was left waiting (the
// Handler has shut down): then make a new Handler.
func (h *Handler) Reattach(s *xmpp.Session) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrHandlerClosed
	}
	h.mu.Unlock()
	if err := h.ep.Reattach(s); err != nil {
		return err
	}
	h.mu.Lock()
	h.s = s
	h.mu.Unlock()
	return nil
}

// session returns the Handler's current XMPP session.
func (h *Handler) session() *xmpp.Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.s
}
