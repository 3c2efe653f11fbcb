package xtlstest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/s5b"
	"github.com/xmppxtls/xtls/internal/socks5"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// rawDial connects to the proxy over TCP, with a deadline that turns a hang
// into a failure.
func rawDial(t *testing.T, p *xtlstest.Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// requireClosed checks that the proxy closes c without sending anything
// more.
func requireClosed(t *testing.T, c net.Conn) {
	t.Helper()
	rest, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Empty(t, rest)
}

func TestProxyHandshakeRefusals(t *testing.T) {
	hash := s5b.DstAddr("s", alice, bob)
	var tests = [...]struct {
		name  string
		write []byte // the client's bytes, after a greeting that offers no authentication
		want  []byte // the proxy's answer to them
	}{
		0: {name: "upper-case hash", write: connectReq(strings.ToUpper(hash), 0), want: refusal(4)},
		1: {name: "39 characters", write: connectReq(hash[:39], 0), want: refusal(4)},
		2: {name: "41 characters", write: connectReq(hash+"0", 0), want: refusal(4)},
		3: {name: "not hexadecimal", write: connectReq(strings.Repeat("g", 40), 0), want: refusal(4)},
		4: {name: "a port", write: connectReq(hash, 80), want: refusal(4)},
		5: {name: "IPv4", write: []byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 0}, want: refusal(8)},
		6: {name: "IPv6", write: append([]byte{5, 1, 0, 4}, make([]byte, 18)...), want: refusal(8)},
		7: {name: "BIND", write: []byte{5, 2, 0, 3, 1, 'x', 0, 0}, want: refusal(7)},
		8: {name: "UDP ASSOCIATE", write: []byte{5, 3, 0, 3, 1, 'x', 0, 0}, want: refusal(7)},
		9: {name: "another version", write: []byte{4, 1, 0, 3, 1, 'x', 0, 0}, want: []byte{}},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i)+" "+tc.name, func(t *testing.T) {
			pn := newProxyNet(t)
			c := rawDial(t, pn.p)
			_, err := c.Write([]byte{5, 1, 0})
			require.NoError(t, err)
			choice := make([]byte, 2)
			_, err = io.ReadFull(c, choice)
			require.NoError(t, err)
			require.Equal(t, []byte{5, 0}, choice)
			_, err = c.Write(tc.write)
			require.NoError(t, err)
			got, err := io.ReadAll(c)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			pn.close(t)
			require.Equal(t, xtlstest.ProxyStats{Accepted: 1, Refused: 1}, pn.p.Stats())
		})
	}

	t.Run("authentication only", func(t *testing.T) {
		pn := newProxyNet(t)
		c := rawDial(t, pn.p)
		_, err := c.Write([]byte{5, 1, 2})
		require.NoError(t, err)
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, []byte{5, 0xff}, got)
	})
}

// connectReq is a CONNECT request to the domain name host.
func connectReq(host string, port uint16) []byte {
	return append(append([]byte{5, 1, 0, 3, byte(len(host))}, host...), byte(port>>8), byte(port))
}

// refusal is the proxy's reply with a failure code.
func refusal(code byte) []byte { return []byte{5, code, 0, 1, 0, 0, 0, 0, 0, 0} }

// A DST.ADDR takes two connections; a third, or one to an active
// bytestream, is not allowed.
func TestProxyTwoConnectionsPerStream(t *testing.T) {
	pn := newProxyNet(t)
	_, err := pn.dial(t, "s")
	require.NoError(t, err)
	_, err = pn.dial(t, "s")
	require.NoError(t, err)
	_, err = pn.dial(t, "s")
	require.True(t, isReply(err, socks5.ReplyNotAllowed), "third connection: %v", err)
	require.NoError(t, s5b.Activate(bounded(t), pn.alice.Session, proxyJID, "s", bob))
	_, err = pn.dial(t, "s")
	require.True(t, isReply(err, socks5.ReplyNotAllowed), "connection to an active bytestream: %v", err)
	// Another bytestream is not affected.
	_, err = pn.dial(t, "t")
	require.NoError(t, err)
}

func TestProxyTimeouts(t *testing.T) {
	t.Run("handshake", func(t *testing.T) {
		pn := newProxyNet(t, xtlstest.ProxyTimeouts(50*time.Millisecond, 0))
		c := rawDial(t, pn.p) // and say nothing
		requireClosed(t, c)
		c = rawDial(t, pn.p)
		_, err := c.Write([]byte{5, 1, 0}) // and no request
		require.NoError(t, err)
		got, err := io.ReadAll(c)
		require.NoError(t, err)
		require.Equal(t, []byte{5, 0}, got)
		pn.close(t)
		require.Equal(t, xtlstest.ProxyStats{Accepted: 2, Refused: 2}, pn.p.Stats())
	})
	t.Run("activation", func(t *testing.T) {
		pn := newProxyNet(t, xtlstest.ProxyTimeouts(0, 50*time.Millisecond))
		target, err := pn.dial(t, "s")
		require.NoError(t, err)
		requireClosed(t, target)
		require.Equal(t, xtlstest.ProxyStats{Accepted: 1, Expired: 1}, pn.p.Stats())
		// The DST.ADDR is free again.
		_, err = pn.dial(t, "s")
		require.NoError(t, err)
		err = s5b.Activate(bounded(t), pn.alice.Session, proxyJID, "s", bob)
		require.ErrorIs(t, err, stanza.Error{Condition: stanza.NotAllowed})
	})
}

// Connections over the limit are closed before their greeting; relaying
// ones do not count.
func TestProxyMaxPending(t *testing.T) {
	pn := newProxyNet(t, xtlstest.ProxyMaxPending(2))
	_, err := pn.dial(t, "s")
	require.NoError(t, err)
	_, err = pn.dial(t, "s")
	require.NoError(t, err)
	requireClosed(t, rawDial(t, pn.p))
	require.Equal(t, int64(1), pn.p.Stats().Refused)
	require.NoError(t, s5b.Activate(bounded(t), pn.alice.Session, proxyJID, "s", bob))
	_, err = pn.dial(t, "t")
	require.NoError(t, err)
}

func TestProxyCut(t *testing.T) {
	pn := newProxyNet(t)
	requester, target := pn.stream(t, "s")
	_, other := pn.stream(t, "other")
	requireRelayed(t, requester, target, "before")

	require.Equal(t, 2, pn.p.Cut())
	requireClosed(t, target)
	requireClosed(t, requester)
	requireClosed(t, other)
	require.Equal(t, 0, pn.p.Cut())
	require.Equal(t, int64(2), pn.p.Stats().Cut)
	// The DST.ADDR is free for a new bytestream.
	requester, target = pn.stream(t, "s")
	requireRelayed(t, target, requester, "after")
}

// CutAfter(n): the target reads exactly the first n bytes, then the end
// of the stream, wherever n falls in what the proxy reads.
func TestProxyCutAfter(t *testing.T) {
	const size = 256 << 10
	data := make([]byte, size)
	mrand.NewChaCha8([32]byte{2}).Read(data)
	for _, n := range []int64{0, 1, 4095, 100000, size - 1} {
		t.Run(strconv.FormatInt(n, 10), func(t *testing.T) {
			pn := newProxyNet(t, xtlstest.CutAfter(n))
			requester, target := pn.stream(t, "s")
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				requester.Write(data) // fails once the proxy has cut
			}()
			got, err := io.ReadAll(target)
			require.NoError(t, err)
			require.Equal(t, int(n), len(got))
			require.True(t, bytes.Equal(data[:n], got), "the first %d bytes came changed", n)
			requester.Close()
			<-wrote
			require.Equal(t, int64(1), pn.p.Stats().Cut)
		})
	}
}

// A ProxyTamper sees every chunk with its bytestream, direction and offset,
// and what it returns is what the other end reads.
func TestProxyTamper(t *testing.T) {
	const size = 200 << 10
	data := make([]byte, size)
	mrand.NewChaCha8([32]byte{3}).Read(data)
	const flip = 150000
	var tests = [...]struct {
		name   string
		tamper func(c xtlstest.Chunk) []byte
		want   func(chunks []int) []byte // from the sizes of the chunks read
	}{
		0: {
			name: "corrupt",
			tamper: func(c xtlstest.Chunk) []byte {
				out := bytes.Clone(c.Data)
				if i := flip - c.Offset; i >= 0 && i < int64(len(out)) {
					out[i] ^= 0x01
				}
				return out
			},
			want: func([]int) []byte {
				w := bytes.Clone(data)
				w[flip] ^= 0x01
				return w
			},
		},
		1: {
			name:   "replay",
			tamper: func(c xtlstest.Chunk) []byte { return append(bytes.Clone(c.Data), c.Data...) },
			want: func(chunks []int) []byte {
				var w []byte
				off := 0
				for _, n := range chunks {
					w = append(w, data[off:off+n]...)
					w = append(w, data[off:off+n]...)
					off += n
				}
				return w
			},
		},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i)+" "+tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var chunks []int
			var seen []xtlstest.Chunk
			pn := newProxyNet(t, xtlstest.ProxyTamper(func(c xtlstest.Chunk) ([]byte, bool) {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, xtlstest.Chunk{Stream: c.Stream, FromRequester: c.FromRequester, Offset: c.Offset})
				if !c.FromRequester {
					return c.Data, false
				}
				chunks = append(chunks, len(c.Data))
				return tc.tamper(c), false
			}))
			requester, target := pn.stream(t, "s")
			go func() {
				requester.Write(data)
				requester.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(target)
			require.NoError(t, err)
			_, err = target.Write([]byte("back"))
			require.NoError(t, err)
			back := make([]byte, 4)
			_, err = io.ReadFull(requester, back)
			require.NoError(t, err)

			mu.Lock()
			defer mu.Unlock()
			require.True(t, bytes.Equal(tc.want(chunks), got), "the target read %d bytes, not what the tamper made", len(got))
			require.Equal(t, "back", string(back), "the other direction is untouched")
			want := xtlstest.Activation{SID: "s", Requester: alice, Target: bob, DstAddr: s5b.DstAddr("s", alice, bob)}
			var offset int64
			for j, c := range seen[:len(chunks)] {
				require.Equal(t, want, c.Stream)
				require.True(t, c.FromRequester)
				require.Equal(t, offset, c.Offset, "chunk %d", j)
				offset += int64(chunks[j])
			}
			last := seen[len(seen)-1]
			require.False(t, last.FromRequester)
			require.Equal(t, int64(0), last.Offset)
		})
	}
}

// A third party that connects with the right DST.ADDR before the requester
// takes the requester's place: the requester is refused, and its activation
// joins the target to the hijacker. (This is what xtls's authenticator on
// the bytestream must catch.)
func TestProxyHijacker(t *testing.T) {
	var tests = [...]struct {
		name  string
		first bool // the hijacker connects before the target, else right after it
	}{
		0: {name: "between the target and the requester"},
		1: {name: "before the target", first: true},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i)+" "+tc.name, func(t *testing.T) {
			var proxy atomic.Pointer[xtlstest.Proxy]
			hijacker := make(chan net.Conn, 1)
			hijack := func(dst string) {
				c, err := proxy.Load().Dial(bounded(t), dst)
				if err != nil {
					t.Errorf("hijacker: %v", err)
					close(hijacker)
					return
				}
				t.Cleanup(func() { c.Close() })
				c.SetDeadline(time.Now().Add(30 * time.Second))
				hijacker <- c
			}
			var once sync.Once
			pn := newProxyNet(t, xtlstest.ProxyOnConnect(func(dst string, nth int) {
				if nth == 1 && !tc.first {
					once.Do(func() { hijack(dst) })
				}
			}))
			proxy.Store(pn.p)
			if tc.first {
				hijack(s5b.DstAddr("s", alice, bob))
			}
			target, err := pn.dial(t, "s")
			require.NoError(t, err)
			h := <-hijacker
			require.NotNil(t, h)
			_, err = pn.dial(t, "s")
			require.True(t, isReply(err, socks5.ReplyNotAllowed), "the requester after the hijacker: %v", err)
			require.NoError(t, s5b.Activate(bounded(t), pn.alice.Session, proxyJID, "s", bob))

			requireRelayed(t, h, target, "evil")
			requireRelayed(t, target, h, "file")
		})
	}
}

// Closing the network closes the proxy's listener and every connection:
// relaying, waiting for activation, and in the handshake.
func TestProxyClose(t *testing.T) {
	pn := newProxyNet(t)
	requester, target := pn.stream(t, "s")
	waiting, err := pn.dial(t, "w")
	require.NoError(t, err)
	greeted := rawDial(t, pn.p)
	_, err = greeted.Write([]byte{5, 1, 0})
	require.NoError(t, err)
	_, err = io.ReadFull(greeted, make([]byte, 2))
	require.NoError(t, err)
	silent := rawDial(t, pn.p) // perhaps not even accepted

	pn.close(t)
	for i, c := range []net.Conn{requester, target, waiting, greeted, silent} {
		_, err := c.Read(make([]byte, 1))
		require.Error(t, err, "connection %d", i)
		require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "connection %d is still open", i)
	}
	_, err = net.Dial("tcp", pn.p.Addr())
	require.Error(t, err, "the listener is still open")
	_, err = pn.p.Dial(context.Background(), s5b.DstAddr("s", alice, bob))
	require.Error(t, err)
}
