package xtls

import (
	"context"

	"github.com/xmppxtls/xtls/transport"
)

// tuneChunk asks the server, once per Handler, what software it runs, so
// that the transport chooses its chunk size for it (2880 bytes on Prosody,
// whose reads of 4096 bytes stall on larger stanzas; see
// transport.Endpoint.TuneChunk), unless Config.Transport sets ChunkSize. It
// runs beside the first Dial or accepted handshake, which wait for the
// query they started: the answer takes one round trip to the server, the
// handshake at least one through it to the peer. A query cut short by ctx
// is asked again next time.
func (h *Handler) tuneChunk(ctx context.Context) (wait func()) {
	return h.ep.TuneChunk(ctx)
}

// ChunkSize returns the largest payload the Handler's tunnels put in one
// data element (within each peer's block-size): Config.Transport's
// ChunkSize if set, otherwise the transport's default until the server's
// software is known, then the size chosen for it.
func (h *Handler) ChunkSize() int { return h.ep.ChunkSize() }

// TransportStats returns the counters of the Handler's transport: data
// elements sent, sent again, and IQs in all.
func (h *Handler) TransportStats() transport.Stats { return h.ep.Stats() }
