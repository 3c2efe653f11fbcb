package transport

import "net"

// QuickAck wraps the TCP connection of a client's XMPP session (before the
// session is made from it) so that the kernel acknowledges what it receives
// at once instead of delaying the ACK. On Linux it re-arms TCP_QUICKACK after
// every read; elsewhere, and for connections that are not TCP, it returns c
// unchanged.
//
// Why: a server that writes a burst of stanzas with Nagle's algorithm on
// (Prosody's default) holds all but the first until the client acknowledges
// it, and a client with nothing to send delays that ACK by about 40 ms.
// An Endpoint already flushes the ACK for each answer to its own IQs (see
// Config.NoQuickAck), which is what a tunnel needs; QuickAck does it for
// every read, for the session's other traffic too. It costs a few more ACK
// segments.
//
//	tcp, err := net.Dial("tcp", "xmpp.example.org:5222")
//	session, err := xmpp.NewClientSession(ctx, addr, transport.QuickAck(tcp), ...)
func QuickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	return quickAck(tc)
}

// ackNow returns a function that acknowledges at once what c's TCP socket
// has received, or nil when c is not (a TLS connection over) TCP, is
// already wrapped by QuickAck, or the platform cannot. Tests replace it.
var ackNow = ackFor
