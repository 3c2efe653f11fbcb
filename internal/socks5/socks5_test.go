package socks5_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/xmppxtls/xtls/internal/socks5"
)

// hash is a DST.ADDR as XEP-0065 makes them: 40 hexadecimal characters.
const hash = "5a0a9e0bc9d5c4a18a7d2b1e4f0c6a4d6e1b2c3d"

// request is the CONNECT request for hash, port 0.
var request = append(append([]byte{5, 1, 0, 3, 40}, hash...), 0, 0)

// okReply is a success reply that echoes the domain, as Prosody's does.
var okReply = append(append([]byte{5, 0, 0, 3, 40}, hash...), 0, 0)

// step is one exchange of a scripted proxy: it expects the client to write
// want in a single Write, and then serves reply to the client's reads.
type step struct {
	want  []byte
	reply []byte
}

// scriptConn is a net.Conn that plays a proxy from a script. It fails the
// exchange if the client writes anything but the next step's message in
// one Write, or reads before it wrote what the step expects: the handshake
// must be lock-step, one message per Write.
type scriptConn struct {
	net.Conn // nil: only the methods below are used
	steps    []step
	pending  []byte // reply bytes the client may read
	eof      bool   // after the script: io.EOF
	writes   int
	deadline time.Time
}

func (c *scriptConn) Write(p []byte) (int, error) {
	if len(c.steps) == 0 {
		return 0, fmt.Errorf("write %x after the script", p)
	}
	if len(c.pending) > 0 {
		return 0, fmt.Errorf("write %x before reading the proxy's answer", p)
	}
	if !bytes.Equal(p, c.steps[0].want) {
		return 0, fmt.Errorf("write %x, want %x in one Write", p, c.steps[0].want)
	}
	c.writes++
	c.pending = c.steps[0].reply
	c.steps = c.steps[1:]
	return len(p), nil
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if c.eof || len(c.steps) == 0 {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("read before writing %x", c.steps[0].want)
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *scriptConn) SetDeadline(t time.Time) error { c.deadline = t; return nil }

var greeting = []byte{5, 1, 0}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestConnect(t *testing.T) {
	var tests = [...]struct {
		name    string
		steps   []step
		check   func(error) bool
		relayed string // bytes the proxy sends right behind its reply
	}{
		0: {name: "ok", steps: []step{{greeting, []byte{5, 0}}, {request, okReply}},
			check: func(err error) bool { return err == nil }},
		1: {name: "ok, IPv4 bound address", steps: []step{{greeting, []byte{5, 0}}, {request, []byte{5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90}}},
			check: func(err error) bool { return err == nil }},
		2: {name: "ok, IPv6 bound address", steps: []step{{greeting, []byte{5, 0}}, {request, cat([]byte{5, 0, 0, 4}, make([]byte, 16), []byte{0, 80})}},
			check: func(err error) bool { return err == nil }},
		3: {name: "data right behind the reply stays on the connection", steps: []step{{greeting, []byte{5, 0}}, {request, cat(okReply, []byte("hello"))}},
			check: func(err error) bool { return err == nil }, relayed: "hello"},
		4: {name: "authentication required", steps: []step{{greeting, []byte{5, 0xff}}},
			check: func(err error) bool { return errors.Is(err, socks5.ErrNoAcceptableMethod) }},
		5: {name: "a method that was not offered", steps: []step{{greeting, []byte{5, 2}}},
			check: func(err error) bool { return errors.Is(err, socks5.ErrProtocol) }},
		6: {name: "SOCKS4 answer", steps: []step{{greeting, []byte{4, 0}}},
			check: func(err error) bool { return errors.Is(err, socks5.ErrProtocol) }},
		7: {name: "refused, Prosody's way", steps: []step{{greeting, []byte{5, 0}}, {request, []byte{5, 1, 0, 3, 0, 0, 0}}},
			check: func(err error) bool {
				var re *socks5.ReplyError
				return errors.As(err, &re) && re.Code == 1 && err.Error() == "socks5: general SOCKS server failure"
			}},
		8: {name: "not allowed", steps: []step{{greeting, []byte{5, 0}}, {request, []byte{5, 2, 0, 1, 0, 0, 0, 0, 0, 0}}},
			check: func(err error) bool {
				var re *socks5.ReplyError
				return errors.As(err, &re) && re.Code == 2
			}},
		9: {name: "unknown reply code", steps: []step{{greeting, []byte{5, 0}}, {request, []byte{5, 0x42, 0, 1, 0, 0, 0, 0, 0, 0}}},
			check: func(err error) bool {
				var re *socks5.ReplyError
				return errors.As(err, &re) && re.Code == 0x42
			}},
		10: {name: "unknown address type", steps: []step{{greeting, []byte{5, 0}}, {request, []byte{5, 0, 0, 9, 0, 0, 0}}},
			check: func(err error) bool { return errors.Is(err, socks5.ErrProtocol) }},
		11: {name: "reserved byte set", steps: []step{{greeting, []byte{5, 0}}, {request, []byte{5, 0, 1, 1, 0, 0, 0, 0, 0, 0}}},
			check: func(err error) bool { return errors.Is(err, socks5.ErrProtocol) }},
		12: {name: "reply of another version", steps: []step{{greeting, []byte{5, 0}}, {request, []byte{4, 0, 0, 1, 0, 0, 0, 0, 0, 0}}},
			check: func(err error) bool { return errors.Is(err, socks5.ErrProtocol) }},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i)+" "+tc.name, func(t *testing.T) {
			c := &scriptConn{steps: tc.steps}
			err := socks5.Connect(t.Context(), c, hash, 0)
			if !tc.check(err) {
				t.Fatalf("Connect: %v", err)
			}
			if err != nil {
				return
			}
			if len(c.steps) != 0 {
				t.Fatalf("Connect returned with %d steps of the script left", len(c.steps))
			}
			rest, err := io.ReadAll(c)
			if err != nil || string(rest) != tc.relayed {
				t.Fatalf("after the handshake the connection holds %q (%v), want %q", rest, err, tc.relayed)
			}
		})
	}
}

// Every answer cut short fails with ErrProtocol; none is taken for a
// success or leaves Connect hanging.
func TestConnectTruncated(t *testing.T) {
	answers := [][]byte{{5, 0}, okReply}
	for a, full := range answers {
		for n := range len(full) {
			steps := []step{{greeting, []byte{5, 0}}, {request, okReply}}
			steps[a].reply = full[:n]
			c := &scriptConn{steps: steps[:a+1], eof: true}
			err := socks5.Connect(t.Context(), c, hash, 0)
			if !errors.Is(err, socks5.ErrProtocol) || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Errorf("answer %d cut to %d bytes: %v", a, n, err)
			}
		}
	}
}

func TestConnectBadDestination(t *testing.T) {
	for _, host := range []string{"", string(bytes.Repeat([]byte{'a'}, 256))} {
		c := &scriptConn{}
		if err := socks5.Connect(t.Context(), c, host, 0); err == nil || c.writes != 0 {
			t.Errorf("destination of %d bytes: err %v after %d writes", len(host), err, c.writes)
		}
	}
	c := &scriptConn{steps: []step{{greeting, []byte{5, 0}}, {cat([]byte{5, 1, 0, 3, 255}, bytes.Repeat([]byte{'a'}, 255), []byte{0x1f, 0x90}), okReply}}}
	if err := socks5.Connect(t.Context(), c, string(bytes.Repeat([]byte{'a'}, 255)), 8080); err != nil {
		t.Errorf("a 255-byte destination, port 8080: %v", err)
	}
}

// Connect leaves no deadline behind on success, and ends with ctx's error
// when ctx ends while the proxy is silent.
func TestConnectContext(t *testing.T) {
	c := &scriptConn{steps: []step{{greeting, []byte{5, 0}}, {request, okReply}}}
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	if err := socks5.Connect(ctx, c, hash, 0); err != nil {
		t.Fatal(err)
	}
	if !c.deadline.IsZero() {
		t.Fatalf("deadline %v left on the connection", c.deadline)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	greeted := make(chan net.Conn, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			close(greeted)
			return
		}
		io.ReadFull(conn, make([]byte, len(greeting)))
		greeted <- conn // and never answer
	}()
	ctx, cancel = context.WithCancel(t.Context())
	go func() {
		if conn, ok := <-greeted; ok {
			defer conn.Close()
			cancel()
		}
	}()
	conn, err := socks5.Dial(ctx, l.Addr().String(), hash, 0)
	if !errors.Is(err, context.Canceled) || conn != nil {
		t.Fatalf("Dial to a silent proxy whose ctx ends: %v, %v", conn, err)
	}
}

// Dial through a proxy on 127.0.0.1 that answers its reply and the first
// relayed bytes in one segment: the caller reads them, then writes back.
func TestDial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	served := make(chan error, 1)
	go func() {
		served <- func() error {
			conn, err := l.Accept()
			if err != nil {
				return err
			}
			defer conn.Close()
			buf := make([]byte, 512)
			n, err := conn.Read(buf)
			if err != nil || !bytes.Equal(buf[:n], greeting) {
				return fmt.Errorf("greeting %x, %v", buf[:n], err)
			}
			conn.Write([]byte{5, 0})
			if _, err := io.ReadFull(conn, buf[:len(request)]); err != nil || !bytes.Equal(buf[:len(request)], request) {
				return fmt.Errorf("request %x, %v", buf[:len(request)], err)
			}
			conn.Write(cat(okReply, []byte("ping")))
			if _, err := io.ReadFull(conn, buf[:4]); err != nil || string(buf[:4]) != "pong" {
				return fmt.Errorf("relayed %q, %v", buf[:4], err)
			}
			return nil
		}()
	}()
	conn, err := socks5.Dial(t.Context(), l.Addr().String(), hash, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := make([]byte, 4)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping" {
		t.Fatalf("relayed %q, %v", got, err)
	}
	if _, err := conn.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// FuzzConnect feeds Connect arbitrary proxy answers: it must never panic,
// and it may succeed only on a well-formed success reply.
func FuzzConnect(f *testing.F) {
	f.Add([]byte{5, 0}, okReply)
	f.Add([]byte{5, 0}, []byte{5, 1, 0, 3, 0, 0, 0})
	f.Add([]byte{5, 0xff}, []byte{})
	f.Add([]byte{5, 0}, []byte{5, 0, 0, 3, 255})
	f.Fuzz(func(t *testing.T, choice, reply []byte) {
		c := &scriptConn{steps: []step{{greeting, choice}, {request, reply}}, eof: true}
		err := socks5.Connect(context.Background(), c, hash, 0)
		if err != nil {
			return
		}
		if !bytes.Equal(choice, []byte{5, 0}) || len(reply) < 7 || reply[0] != 5 || reply[1] != 0 || reply[2] != 0 {
			t.Fatalf("success on choice %x, reply %x", choice, reply)
		}
	})
}
