// Package transport is a reliable, ordered, flow-controlled byte stream
// between two XMPP entities, carried by IQ stanzas: the tunnel under XTLS.
//
// An Endpoint serves one XMPP session. It registers handlers for the XTLS
// elements in the application's mellium mux (Endpoint.Handle), opens tunnels
// to a peer's full JID (Dial, or Open for an optimistic first flight) and
// accepts the peer's (SetAcceptFunc). Each tunnel is a *Conn, a net.Conn
// whose addresses have the network "xmpp".
//
// Data is cut into blocks of at most the peer's block-size, Base64-encoded
// into data elements with a 16-bit sequence number, and sent as IQ-sets, up
// to 256 unacknowledged at once; the empty IQ-result is the acknowledgement.
// Blocks that arrive ahead of a gap are held (at most 255) and delivered in
// order; duplicates are acknowledged again and dropped. Flow control is by
// credit with absolute limits, so a retransmitted credit element never grants
// anything twice, and a slow reader stops the sender without anything
// failing. IQs whose result does not come within an adaptive timeout, or that
// are answered with an error of type wait, are sent again unchanged, a
// bounded number of times. docs/protocol.md in the repository states the wire
// contract in full.
//
// Every handler answers at once and never blocks the session's Serve loop;
// IQs are sent from goroutines the transport owns, and an IQ's context is
// cancelled only once its stanza is known to be completely written, so that
// mellium's context-to-deadline "pulse" can never cut a stanza in half.
//
// Concurrency: a Conn's Read, Write, Close and deadline methods may be called
// from any goroutine, as net.Conn requires. Each Conn has one mutex; no
// method holds it while sending or while waiting.
package transport // import "github.com/xmppxtls/xtls/transport"
