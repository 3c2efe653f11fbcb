package xtls

import "github.com/xmppxtls/xtls/transport"

// TransportConfig returns the configuration the Handler gave its transport.
func (h *Handler) TransportConfig() transport.Config { return h.ep.Config() }
