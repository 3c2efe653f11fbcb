package socks5_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/xmppxtls/xtls/internal/socks5"
)

// clientConn is what a server reads and writes: the client's bytes, and
// the server's answers collected.
type clientConn struct {
	*bytes.Reader
	answer bytes.Buffer
}

func (c *clientConn) Write(p []byte) (int, error) { return c.answer.Write(p) }

var (
	noAuth   = []byte{5, 0}
	noMethod = []byte{5, 0xff}
)

func refusal(code byte) []byte { return []byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0} }

func isReply(code byte) func(error) bool {
	return func(err error) bool {
		var re *socks5.ReplyError
		return errors.As(err, &re) && re.Code == code
	}
}

func TestReadRequest(t *testing.T) {
	var tests = [...]struct {
		name   string
		client []byte
		answer []byte // what the server writes
		check  func(error) bool
		host   string
		port   uint16
	}{
		0: {name: "XEP-0065's request", client: cat(greeting, request), answer: noAuth, host: hash},
		1: {name: "several methods, no authentication among them", client: cat([]byte{5, 3, 2, 1, 0}, request), answer: noAuth, host: hash},
		2: {name: "a port", client: cat(greeting, []byte{5, 1, 0, 3, 1, 'x', 0x1f, 0x90}), answer: noAuth, host: "x", port: 8080},
		3: {name: "authentication only", client: []byte{5, 1, 2}, answer: noMethod,
			check: func(err error) bool { return errors.Is(err, socks5.ErrNoAcceptableMethod) }},
		4: {name: "no method at all", client: []byte{5, 0}, answer: noMethod,
			check: func(err error) bool { return errors.Is(err, socks5.ErrNoAcceptableMethod) }},
		5: {name: "SOCKS4", client: []byte{4, 1, 0, 0, 127, 0, 0, 1, 0},
			check: func(err error) bool { return errors.Is(err, socks5.ErrProtocol) }},
		6: {name: "BIND", client: cat(greeting, []byte{5, 2, 0, 3, 1, 'x', 0, 0}), answer: cat(noAuth, refusal(7)),
			check: isReply(socks5.ReplyCommandNotSupported)},
		7: {name: "UDP ASSOCIATE", client: cat(greeting, []byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}), answer: cat(noAuth, refusal(7)),
			check: isReply(socks5.ReplyCommandNotSupported)},
		8: {name: "IPv4", client: cat(greeting, []byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 0}), answer: cat(noAuth, refusal(8)),
			check: isReply(socks5.ReplyAddressTypeNotSupported)},
		9: {name: "IPv6", client: cat(greeting, []byte{5, 1, 0, 4}, make([]byte, 18)), answer: cat(noAuth, refusal(8)),
			check: isReply(socks5.ReplyAddressTypeNotSupported)},
		10: {name: "request of another version", client: cat(greeting, []byte{4, 1, 0, 3, 1, 'x', 0, 0}), answer: noAuth,
			check: func(err error) bool { return errors.Is(err, socks5.ErrProtocol) }},
		11: {name: "empty domain name", client: cat(greeting, []byte{5, 1, 0, 3, 0, 0, 0}), answer: noAuth, host: ""},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i)+" "+tc.name, func(t *testing.T) {
			const after = "relayed"
			c := &clientConn{Reader: bytes.NewReader(cat(tc.client, []byte(after)))}
			host, port, err := socks5.ReadRequest(c)
			if !bytes.Equal(c.answer.Bytes(), tc.answer) {
				t.Errorf("the server wrote %x, want %x", c.answer.Bytes(), tc.answer)
			}
			if tc.check != nil {
				if !tc.check(err) {
					t.Fatalf("ReadRequest: %v", err)
				}
				return
			}
			if err != nil || host != tc.host || port != tc.port {
				t.Fatalf("ReadRequest = %q, %d, %v; want %q, %d", host, port, err, tc.host, tc.port)
			}
			if rest, _ := io.ReadAll(c); string(rest) != after {
				t.Fatalf("ReadRequest consumed what follows the request: %q left", rest)
			}
		})
	}
}

// Every client message cut short fails with ErrProtocol.
func TestReadRequestTruncated(t *testing.T) {
	full := cat(greeting, request)
	for n := range len(full) {
		c := &clientConn{Reader: bytes.NewReader(full[:n])}
		if _, _, err := socks5.ReadRequest(c); !errors.Is(err, socks5.ErrProtocol) {
			t.Errorf("request cut to %d bytes: %v", n, err)
		}
	}
}

func TestWriteReply(t *testing.T) {
	var b bytes.Buffer
	if err := socks5.WriteReply(&b, socks5.ReplySucceeded, hash, 0); err != nil || !bytes.Equal(b.Bytes(), okReply) {
		t.Fatalf("success reply %x (%v), want %x", b.Bytes(), err, okReply)
	}
	b.Reset()
	if err := socks5.WriteReply(&b, socks5.ReplyNotAllowed, hash, 0); err != nil || !bytes.Equal(b.Bytes(), refusal(2)) {
		t.Fatalf("refusal %x (%v), want %x", b.Bytes(), err, refusal(2))
	}
	b.Reset()
	if err := socks5.WriteReply(&b, socks5.ReplySucceeded, "", 0); err == nil || b.Len() != 0 {
		t.Fatalf("success without a bound address: wrote %x, %v", b.Bytes(), err)
	}
}

// Connect and ReadRequest with WriteReply understand each other, lock-step
// over a synchronous pipe, and whatever follows the reply is relayed.
func TestClientServer(t *testing.T) {
	for _, code := range []byte{socks5.ReplySucceeded, socks5.ReplyNotAllowed, socks5.ReplyHostUnreachable} {
		client, server := net.Pipe()
		served := make(chan error, 1)
		go func() {
			defer server.Close()
			host, port, err := socks5.ReadRequest(server)
			if err == nil {
				err = socks5.WriteReply(server, code, host, port)
			}
			if err == nil && code == socks5.ReplySucceeded {
				_, err = server.Write([]byte("ping"))
			}
			served <- err
		}()
		err := socks5.Connect(t.Context(), client, hash, 0)
		if code == socks5.ReplySucceeded {
			got := make([]byte, 4)
			if _, rerr := io.ReadFull(client, got); err != nil || rerr != nil || string(got) != "ping" {
				t.Errorf("reply %d: Connect %v, then read %q (%v)", code, err, got, rerr)
			}
		} else if !isReply(code)(err) {
			t.Errorf("reply %d: Connect %v", code, err)
		}
		if err := <-served; err != nil {
			t.Errorf("reply %d: server: %v", code, err)
		}
		client.Close()
	}
}

// FuzzReadRequest feeds ReadRequest arbitrary client bytes: it must never
// panic, and it may return a request only after a greeting that offers no
// authentication and a CONNECT to a domain name.
func FuzzReadRequest(f *testing.F) {
	f.Add(cat(greeting, request))
	f.Add([]byte{5, 1, 2})
	f.Add(cat(greeting, []byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 0}))
	f.Add(cat(greeting, []byte{5, 1, 0, 3, 255}))
	f.Fuzz(func(t *testing.T, client []byte) {
		c := &clientConn{Reader: bytes.NewReader(client)}
		host, _, err := socks5.ReadRequest(c)
		if err != nil {
			return
		}
		n := int(client[1])
		req := client[2+n:]
		if client[0] != 5 || bytes.IndexByte(client[2:2+n], 0) < 0 || req[0] != 5 || req[1] != 1 || req[3] != 3 || int(req[4]) != len(host) {
			t.Fatalf("request %q read from %x", host, client)
		}
	})
}
