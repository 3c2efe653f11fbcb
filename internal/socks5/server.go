package socks5

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Reply codes of RFC 1928 (the REP field), as a server sends them.
const (
	ReplySucceeded               byte = 0x00
	ReplyGeneralFailure          byte = 0x01
	ReplyNotAllowed              byte = 0x02 // connection not allowed by ruleset
	ReplyHostUnreachable         byte = 0x04
	ReplyCommandNotSupported     byte = 0x07
	ReplyAddressTypeNotSupported byte = 0x08
)

// ReadRequest runs the server's side of the handshake on rw up to the
// client's request, for the same subset of SOCKS5 as [Connect]: it reads the
// greeting, chooses "no authentication", and reads a CONNECT request to a
// domain name, which it returns. The caller answers it with [WriteReply].
// Every read is byte-exact, so nothing the client sends after its request
// is consumed.
//
// A client that does not offer "no authentication" is answered "no
// acceptable method" ([ErrNoAcceptableMethod]); a request for another
// command, or to an IPv4 or IPv6 address, is answered with
// [ReplyCommandNotSupported] or [ReplyAddressTypeNotSupported] and returned
// as a [*ReplyError] with that code. Another version, or a message cut short,
// is answered nothing and returned as an error wrapping [ErrProtocol] (or
// the connection's error). After an error the caller should close rw.
// ReadRequest sets no deadline: the caller bounds it.
func ReadRequest(rw io.ReadWriter) (host string, port uint16, err error) {
	var head [2]byte // VER NMETHODS
	if err := readFull(rw, head[:], "client", "greeting"); err != nil {
		return "", 0, err
	}
	if head[0] != version5 {
		return "", 0, fmt.Errorf("%w: greeting of version %d", ErrProtocol, head[0])
	}
	methods := make([]byte, head[1])
	if err := readFull(rw, methods, "client", "greeting"); err != nil {
		return "", 0, err
	}
	choice := byte(methodNone)
	for _, m := range methods {
		if m == methodNoAuth {
			choice = methodNoAuth
		}
	}
	if _, err := rw.Write([]byte{version5, choice}); err != nil {
		return "", 0, fmt.Errorf("socks5: method choice: %w", err)
	}
	if choice == methodNone {
		return "", 0, ErrNoAcceptableMethod
	}

	var req [5]byte // VER CMD RSV ATYP, and the first byte of DST.ADDR
	if err := readFull(rw, req[:4], "client", "request"); err != nil {
		return "", 0, err
	}
	switch {
	case req[0] != version5:
		return "", 0, fmt.Errorf("%w: request of version %d", ErrProtocol, req[0])
	case req[1] != cmdConnect:
		return "", 0, refuse(rw, ReplyCommandNotSupported)
	case req[3] != atypDomain:
		return "", 0, refuse(rw, ReplyAddressTypeNotSupported)
	}
	if err := readFull(rw, req[4:], "client", "request"); err != nil {
		return "", 0, err
	}
	rest := make([]byte, int(req[4])+2) // DST.ADDR, DST.PORT
	if err := readFull(rw, rest, "client", "request"); err != nil {
		return "", 0, err
	}
	return string(rest[:req[4]]), binary.BigEndian.Uint16(rest[req[4]:]), nil
}

// WriteReply writes the server's reply to a CONNECT request in one Write.
// A success names host and port (for XEP-0065, the request's DST.ADDR and
// DST.PORT) as the bound address; a failure names 0.0.0.0:0.
func WriteReply(w io.Writer, code byte, host string, port uint16) error {
	var b []byte
	if code == ReplySucceeded {
		if len(host) == 0 || len(host) > maxDomainName {
			return fmt.Errorf("socks5: bound address %q: a domain name of 1 to %d bytes", host, maxDomainName)
		}
		b = append([]byte{version5, code, 0, atypDomain, byte(len(host))}, host...)
		b = binary.BigEndian.AppendUint16(b, port)
	} else {
		b = []byte{version5, code, 0, atypIPv4, 0, 0, 0, 0, 0, 0}
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("socks5: reply: %w", err)
	}
	return nil
}

// refuse answers a request with the failure code and returns it as an
// error.
func refuse(w io.Writer, code byte) error {
	if err := WriteReply(w, code, "", 0); err != nil {
		return err
	}
	return &ReplyError{Code: code}
}
