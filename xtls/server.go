package xtls

import (
	"context"
	"strings"
	"sync"

	"mellium.im/xmpp/disco"

	"github.com/xmppxtls/xtls/transport"
)

// Chunk sizes chosen for a server's software when Config.Transport leaves
// ChunkSize zero. What the transport's default (5120) does not suit:
//
// Prosody (0.12 measured) reads a client 4096 bytes at a time and, when a
// read leaves part of a TLS record buffered, pauses that connection for up
// to a millisecond (server_epoll's read_retry_delay, rounded up to its
// loop's min_wait). mellium writes a stanza through a 4096-byte buffer and
// flushes it whole, so a 5120-byte chunk leaves as a 4096-byte record and a
// ~2.9 KB one and most of Prosody's reads end inside a record: ~120 pauses
// per MB. 2880 bytes are 3840 in Base64: the whole data IQ fits one
// 4096-byte record (up to a peer JID of about 100 bytes), and the pauses
// vanish. Measured over Prosody 0.12 (xtls-bench -quick, 32 MiB, median of
// 5): 10.3 against 9.5 MB/s, and 1.0 of the raw ceiling against 0.88. An
// operator who raises network_default_read_size to 65536 removes the trap;
// a client of such a server does better with ChunkSize set (16384: ~23
// MB/s).
const prosodyChunk = 2880

// chunkFor returns the chunk size for a server whose software is name
// (lower case), or 0 to keep the transport's default.
func chunkFor(name string) int {
	switch name {
	case "prosody":
		return prosodyChunk
	}
	return 0
}

// serverTuning asks the server once per Handler what software it runs and
// sets the transport's chunk size from the answer (chunkFor). It runs beside
// the first Dial or accepted handshake, which wait for it: the answer takes
// one round trip to the server, the handshake at least one through it to
// the peer, so the tunnel rarely waits, and no query outlives the call
// that started it. A tunnel opened before the answer adopts the new size
// from its next data element.
type serverTuning struct {
	mu      sync.Mutex
	done    bool          // the server answered (or tuning is off)
	running chan struct{} // closed when the query under way ends
}

// tuneChunk starts the query unless it is done or under way and returns a
// function that waits for the query it started (a no-op otherwise). The
// query ends when ctx does, or after probeTimeout.
func (h *Handler) tuneChunk(ctx context.Context) (wait func()) {
	t := &h.tuning
	t.mu.Lock()
	if t.done || t.running != nil {
		t.mu.Unlock()
		return func() {}
	}
	running := make(chan struct{})
	t.running = running
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	go func() {
		defer close(running)
		defer cancel()
		name, ok := h.serverSoftware(ctx)
		t.mu.Lock()
		t.running = nil
		t.done = ok
		t.mu.Unlock()
		if n := chunkFor(name); ok && n != 0 {
			h.ep.SetChunkSize(n)
			h.log.Debug("xtls: chunk size chosen for the server's software", "server", name, "chunk", n)
		}
	}()
	return func() { <-running }
}

// serverSoftware names the server's software in lower case: the name of its
// disco#info identity of category server (Prosody's unless its operator set
// another "name"). ok is false if the server did not answer (an error
// answer counts as an answer: there is nothing to learn).
func (h *Handler) serverSoftware(ctx context.Context) (name string, ok bool) {
	inf, err := disco.GetInfo(ctx, "", h.s.LocalAddr().Domain(), h.s)
	if ctx.Err() != nil {
		return "", false
	}
	if err != nil {
		return "", true
	}
	for _, id := range inf.Identity {
		if id.Category == "server" {
			return strings.ToLower(id.Name), true
		}
	}
	return "", true
}

// ChunkSize returns the largest payload the Handler's tunnels put in one
// data element (within each peer's block-size): Config.Transport's
// ChunkSize if set, otherwise the transport's default until the server's
// software is known, then the size chosen for it (2880 bytes for Prosody,
// whose reads of 4096 bytes stall on larger stanzas).
func (h *Handler) ChunkSize() int { return h.ep.ChunkSize() }

// TransportStats returns the counters of the Handler's transport: data
// elements sent, sent again, and IQs in all.
func (h *Handler) TransportStats() transport.Stats { return h.ep.Stats() }
