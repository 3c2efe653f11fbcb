// Package socks5 is the client side of a SOCKS5 CONNECT (RFC 1928) without
// authentication: the part of SOCKS5 that XMPP's SOCKS5 Bytestreams
// (XEP-0065) use to reach a bytestream proxy. [ReadRequest] and
// [WriteReply] are the server's side of the same subset, for the test
// proxy of package xtlstest.
//
// The destination is always a domain name (address type 3). XEP-0065 puts
// there the hexadecimal SHA-1 of the stream ID and both full JIDs, with port
// 0, which is why this package exists: golang.org/x/net/proxy refuses port 0.
// The XMPP side (finding the proxy, the hash, activation) is in
// internal/s5b; this package knows nothing of XMPP.
//
// The handshake is strictly lock-step, each message written with one Write:
// the greeting, then, once the proxy has chosen "no authentication", the
// request, then the proxy's reply. Prosody's proxy65 needs both: it parses
// each read as one whole message and closes a connection whose greeting
// arrives together with the request. The reply is read byte-exactly, so
// whatever the proxy relays right behind it stays on the connection for the
// caller.
//
//	conn, err := socks5.Dial(ctx, "127.0.0.1:5000", dstAddr, 0)
//	// conn now carries the relayed bytes (for XEP-0065, once activated).
package socks5 // import "github.com/xmppxtls/xtls/internal/socks5"

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Protocol constants of RFC 1928.
const (
	version5      = 0x05
	methodNoAuth  = 0x00
	methodNone    = 0xff // no acceptable method
	cmdConnect    = 0x01
	atypIPv4      = 0x01
	atypDomain    = 0x03
	atypIPv6      = 0x04
	maxDomainName = 255
)

// ErrNoAcceptableMethod is returned when the proxy accepts none of the
// methods offered: it wants authentication.
var ErrNoAcceptableMethod = errors.New("socks5: the proxy requires authentication")

// ErrProtocol is wrapped by the errors for answers that break RFC 1928: a
// wrong version, an unknown address type, a non-zero reserved byte, or an
// answer cut short.
var ErrProtocol = errors.New("socks5: protocol violation")

// ReplyError is a CONNECT refused by the proxy: the REP field of its reply.
type ReplyError struct {
	Code byte
}

// Error names the reply code as RFC 1928 does.
func (e *ReplyError) Error() string {
	if s, ok := replyText[e.Code]; ok {
		return "socks5: " + s
	}
	return fmt.Sprintf("socks5: the proxy refused the connection (reply code %d)", e.Code)
}

var replyText = map[byte]string{
	0x01: "general SOCKS server failure",
	0x02: "connection not allowed by ruleset",
	0x03: "network unreachable",
	0x04: "host unreachable",
	0x05: "connection refused",
	0x06: "TTL expired",
	0x07: "command not supported",
	0x08: "address type not supported",
}

// Dial connects to the proxy at proxyAddr over TCP and asks it, with
// [Connect], to connect to host:port. On success the returned connection
// carries what the proxy relays; on failure nothing is left open. ctx bounds
// the dial and the handshake.
func Dial(ctx context.Context, proxyAddr, host string, port uint16) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("socks5: %w", err)
	}
	if err := Connect(ctx, conn, host, port); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Connect runs the client's side of the handshake on conn, already connected
// to a SOCKS5 proxy: no authentication, then CONNECT to the domain name
// host (1 to 255 bytes) and port. It reads exactly the proxy's answers, so
// that the relayed bytes that follow stay on conn.
//
// ctx bounds the handshake: Connect sets conn's deadline from it (and to now
// if ctx ends) and clears the deadline before it returns. It returns
// ctx's error if ctx ended, [ErrNoAcceptableMethod], a [*ReplyError], or an
// error wrapping [ErrProtocol] or the connection's error.
func Connect(ctx context.Context, conn net.Conn, host string, port uint16) (err error) {
	if len(host) == 0 || len(host) > maxDomainName {
		return fmt.Errorf("socks5: destination %q: a domain name of 1 to %d bytes", host, maxDomainName)
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if !stop() || ctx.Err() != nil {
			// ctx ended meanwhile: its error explains the failed I/O.
			err = fmt.Errorf("socks5: %w", context.Cause(ctx))
			return
		}
		conn.SetDeadline(time.Time{})
	}()

	if _, err := conn.Write([]byte{version5, 1, methodNoAuth}); err != nil {
		return fmt.Errorf("socks5: greeting: %w", err)
	}
	var choice [2]byte
	if err := readFull(conn, choice[:], "proxy", "method choice"); err != nil {
		return err
	}
	switch {
	case choice[0] != version5:
		return fmt.Errorf("%w: method choice of version %d", ErrProtocol, choice[0])
	case choice[1] == methodNone:
		return ErrNoAcceptableMethod
	case choice[1] != methodNoAuth:
		return fmt.Errorf("%w: the proxy chose method %d, which was not offered", ErrProtocol, choice[1])
	}

	req := make([]byte, 0, 7+len(host))
	req = append(req, version5, cmdConnect, 0, atypDomain, byte(len(host)))
	req = append(req, host...)
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("socks5: request: %w", err)
	}
	return readReply(conn)
}

// readReply reads the proxy's reply to CONNECT, byte-exactly:
// VER REP RSV ATYP BND.ADDR BND.PORT.
func readReply(conn net.Conn) error {
	var head [5]byte // up to the first byte of BND.ADDR (a domain's length)
	if err := readFull(conn, head[:], "proxy", "reply"); err != nil {
		return err
	}
	if head[0] != version5 {
		return fmt.Errorf("%w: reply of version %d", ErrProtocol, head[0])
	}
	var rest int // bytes after head: the rest of BND.ADDR, and BND.PORT
	switch head[3] {
	case atypIPv4:
		rest = 4 - 1 + 2
	case atypIPv6:
		rest = 16 - 1 + 2
	case atypDomain:
		rest = int(head[4]) + 2
	default:
		return fmt.Errorf("%w: reply with address type %d", ErrProtocol, head[3])
	}
	// Read the bound address even when the request failed: a proxy that
	// leaves the connection open must not leave half a reply on it.
	if err := readFull(conn, make([]byte, rest), "proxy", "reply"); err != nil {
		return err
	}
	if head[1] != 0 {
		return &ReplyError{Code: head[1]}
	}
	if head[2] != 0 {
		return fmt.Errorf("%w: reserved byte %d in the reply", ErrProtocol, head[2])
	}
	return nil
}

// readFull reads len(p) bytes of the message what of peer ("proxy" or
// "client"); a message cut short by the end of the connection is a
// protocol violation.
func readFull(r io.Reader, p []byte, peer, what string) error {
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: the %s closed the connection in its %s: %w", ErrProtocol, peer, what, err)
		}
		return fmt.Errorf("socks5: reading the %s: %w", what, err)
	}
	return nil
}
