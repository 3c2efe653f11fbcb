package xtls

import (
	"net"

	"github.com/xmppxtls/xtls/transport"
)

// QuickAck wraps the TCP connection of a client's XMPP session (before the
// session is made from it) so that the kernel acknowledges what it receives
// at once instead of delaying the ACK. On Linux it re-arms TCP_QUICKACK after
// every read; elsewhere, and for connections that are not TCP, it returns c
// unchanged. It is transport.QuickAck.
//
// Why: a server that writes a burst of stanzas with Nagle's algorithm on
// (Prosody's default) holds all but the first until the client acknowledges
// it, and a client with nothing to send delays that ACK by about 40 ms.
// A Handler already flushes the ACK for each response to its own IQs (see
// Config.NoQuickAck), which is what a tunnel's handshake needs; QuickAck
// does it for every read, for the session's other traffic too. It costs a
// few more ACK segments.
//
//	tcp, err := net.Dial("tcp", "xmpp.example.org:5222")
//	session, err := xmpp.NewClientSession(ctx, addr, xtls.QuickAck(tcp), ...)
func QuickAck(c net.Conn) net.Conn { return transport.QuickAck(c) }
