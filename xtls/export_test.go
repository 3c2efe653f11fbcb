package xtls

import "net"

// SetAckFor replaces how a new Handler finds the function that flushes its
// session's delayed ACKs, until restore is called.
func SetAckFor(f func(net.Conn) func()) (restore func()) {
	old := ackFor
	ackFor = f
	return func() { ackFor = old }
}

// UseContract2 makes h speak contract 2 of the wire protocol, as a peer
// that predates the responder's verdict: it offers and accepts no ALPN.
func UseContract2(h *Handler) {
	h.clientTLS.NextProtos = nil
	h.serverTLS.NextProtos = nil
}

// SetMaxVersion caps the TLS version h offers and accepts.
func SetMaxVersion(h *Handler, v uint16) {
	h.clientTLS.MaxVersion = v
	h.serverTLS.MaxVersion = v
}
