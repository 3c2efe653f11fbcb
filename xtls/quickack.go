package xtls

import "net"

// QuickAck wraps the TCP connection of a client's XMPP session (before the
// session is made from it) so that the kernel acknowledges what it receives
// at once instead of delaying the ACK. On Linux it re-arms TCP_QUICKACK after
// every read; elsewhere, and for connections that are not TCP, it returns c
// unchanged.
//
// Why: a server that writes a burst of stanzas with Nagle's algorithm on
// (Prosody's default) holds all but the first until the client acknowledges
// it, and a client with nothing to send delays that ACK by about 40 ms. A
// tunnel's handshake is such a burst: through an untuned Prosody on
// loopback, the first application byte took ~85 ms without QuickAck and a
// few with it (integration/cmd/xtls-bench). It costs a few more ACK
// segments.
//
//	tcp, err := net.Dial("tcp", "xmpp.example.org:5222")
//	session, err := xmpp.NewClientSession(ctx, addr, xtls.QuickAck(tcp), ...)
func QuickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	return quickAck(tc)
}
