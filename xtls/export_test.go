package xtls

import "github.com/xmppxtls/xtls/transport"

// TransportConfig returns the configuration the Handler gave its transport.
func (h *Handler) TransportConfig() transport.Config { return h.ep.Config() }

// UseContract2 makes h speak contract 2 of the wire protocol, as a peer
// that predates the responder's verdict: it offers and accepts no ALPN.
func UseContract2(h *Handler) {
	h.clientTLS.NextProtos = nil
	h.serverTLS.NextProtos = nil
}

// UseContract3 makes h speak contract 3, as a peer that predates
// contract 4's records: it offers and accepts only xmpp-xtls/3.
func UseContract3(h *Handler) {
	h.clientTLS.NextProtos = []string{alpnContract3}
	h.serverTLS.NextProtos = []string{alpnContract3}
}

// UseContract4 makes h speak contract 4, as a peer that predates
// re-attachment: it offers and accepts xmpp-xtls/4 and /3.
func UseContract4(h *Handler) {
	h.clientTLS.NextProtos = nextProtos(false)
	h.serverTLS.NextProtos = nextProtos(false)
}

// SetMaxVersion caps the TLS version h offers and accepts.
func SetMaxVersion(h *Handler, v uint16) {
	h.clientTLS.MaxVersion = v
	h.serverTLS.MaxVersion = v
}
