// Package transport is a reliable, ordered, flow-controlled byte stream
// between two XMPP entities, carried by IQ stanzas: the tunnel under XTLS.
//
// An Endpoint serves one XMPP session. It registers handlers for the XTLS
// elements, and for the answers to its own IQs, in the application's
// mellium mux (Endpoint.Handle), opens tunnels to a peer's full JID (Dial,
// or Open for an optimistic first flight) and accepts the peer's
// (SetAcceptFunc). Each tunnel is a *Conn, a net.Conn whose addresses have
// the network "xmpp".
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
// # Who owns what
//
// Each tunnel is a state machine (tunnel, machine*.go) with no I/O, no
// goroutines, no channels and no clock: events go in (the application's
// reads, writes and closes; elements received; answers to what it sent;
// the time), and it says what to send next, when it next needs the time,
// and what its callers may now learn. It names its blocks by seq and never
// learns how they travel.
//
// One goroutine per Endpoint, its loop (loop.go), owns every machine of
// the session, the map of tunnels, the timers, and the path beneath the
// machines. A loop per session rather than per tunnel, because what the
// tunnels of one session share is what matters most: one XMPP stream, in
// which a chat message waits behind every stanza of a file, and one
// in-flight bound that keeps that queue short. The loop decides the send
// order across tunnels and keeps the bound; it also keeps the number of
// goroutines independent of the tunnels and of the IQs in flight.
//
// The path (iqpath.go) carries the machines' elements as IQ stanzas and
// hides every mellium workaround: its own IQ ids and the matching of
// answers (and the check that an answer comes from the peer's full JID),
// one writer goroutine that writes each stanza whole under the session's
// output lock, control elements before data, the kernel's delayed ACK
// flushed when an answer arrives, the chunk size chosen for the server's
// software. Its scheduler (sched.go) sends control elements first, then the
// data of tunnels that have just become active (a chat message), then the
// busy tunnels' data in turns; its controller (controller.go) bounds what
// is in flight so that the queue stays about Config.QueueTarget long at the
// rate the path delivers, and shrinks the data stanzas on a path too slow
// for that.
//
// Everything else only posts events to the loop and returns, or waits for
// the loop's answer where it needs one; the loop never waits for anything
// but its next event, so such a wait is short and cannot deadlock:
//   - the session's Serve goroutine, running Endpoint.HandleIQ: it reads an
//     element, gets the loop's verdict, writes the answer itself and
//     returns, never blocking Serve for longer; answers to our IQs are
//     posted without waiting;
//   - the application's goroutines in Conn's methods: they wait for the
//     loop to fill or drain their buffer, and for their deadlines;
//   - the path's writer goroutine: it reports each stanza it has written.
//
// So an Endpoint runs exactly two goroutines, its loop and its path's
// writer, however many tunnels it has and however many IQs are in flight,
// until it is closed or its session ends; then both end, and the methods of
// its tunnels run on their callers' goroutines, one at a time.
//
// A tunnel may also move onto a bytestream (Conn.UseBytestream: a SOCKS5
// bytestream through a server's proxy, which xtls negotiates inside TLS):
// its data and credit then travel there as binary frames, in the same
// sequence space, and what the bytestream leaves unanswered when it ends
// goes again on IQs (bytestream.go). Such a tunnel has two goroutines of
// its own while the bytestream lasts, its reader and its writer; the loop
// still owns its state.
//
// Concurrency: a Conn's Read, Write, Close and deadline methods may be called
// from any goroutine, as net.Conn requires.
package transport // import "github.com/xmppxtls/xtls/transport"
