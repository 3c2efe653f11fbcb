package transport_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/internal/bsframe"
	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls/xtlstest"
)

// tcpPair returns the two ends of a TCP connection on 127.0.0.1: a
// bytestream as a direct connection or a proxy would give it.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c1, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	c2 := <-acc
	require.NotNil(t, c2)
	t.Cleanup(func() { c1.Close(); c2.Close() })
	return c1, c2
}

// flow sends n random bytes from one end to the other and checks them on
// arrival. at is called, on the reading side, once each mark (bytes
// received) is passed, in order: the test moves the tunnel there while
// data is in flight.
func flow(t testing.TB, from, to *transport.Conn, n int64, seed byte, marks []int64, at func(i int)) {
	t.Helper()
	want, got := sha256.New(), sha256.New()
	werr := make(chan error, 1)
	go func() {
		src := io.LimitReader(rand.NewChaCha8([32]byte{seed}), n)
		_, err := io.Copy(from, io.TeeReader(src, want))
		if err == nil {
			err = from.CloseWrite()
		}
		werr <- err
	}()
	var read int64
	buf := make([]byte, 32<<10)
	for i := 0; ; {
		k, err := to.Read(buf)
		got.Write(buf[:k])
		read += int64(k)
		for ; i < len(marks) && read >= marks[i]; i++ {
			at(i)
		}
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.NoError(t, <-werr)
	require.Equal(t, n, read)
	require.Equal(t, want.Sum(nil), got.Sum(nil), "the bytes arrived changed")
}

// attach puts both ends of a tunnel on a fresh TCP bytestream.
func attach(t testing.TB, c1, c2 *transport.Conn) (net.Conn, net.Conn) {
	t.Helper()
	s1, s2 := tcpPair(t)
	require.NoError(t, c1.UseBytestream(s1))
	require.NoError(t, c2.UseBytestream(s2))
	return s1, s2
}

// A tunnel moves from IQs onto a bytestream and back, and onto another
// one, while data flows both ways; the IQ path duplicates, reorders and
// drops stanzas meanwhile. The bytes arrive exact, most of them on the
// bytestreams, and no TLS-level party would notice: the same Conn all
// along.
func TestBytestreamMoves(t *testing.T) {
	w := newWorld(t, nil, xtlstest.Seed(3), xtlstest.Duplicate(0.02), xtlstest.Reorder(0.02), xtlstest.Drop(0.01))
	cfg := &transport.Config{Window: 1 << 20, MinAckTimeout: 300 * time.Millisecond}
	a := w.join(t, alice, cfg)
	b := w.join(t, bob, cfg)
	c1, c2 := pipe(t, a, b)

	const n = 16 << 20
	marks := []int64{1 << 20, 6 << 20, 9 << 20}
	var done sync.WaitGroup
	done.Add(1)
	go func() {
		defer done.Done()
		// Bob → alice, moved by alice's side of the test only by the
		// moves below: both directions share the bytestream.
		flow(t, c2, c1, n/4, 2, nil, nil)
	}()
	flow(t, c1, c2, n, 1, marks, func(i int) {
		switch i {
		case 0:
			attach(t, c1, c2)
		case 1:
			// Back to IQs, from bob's side: the bytestream closes once
			// both have said BYE and all on it is answered.
			<-c2.LeaveBytestream()
			<-c1.LeaveBytestream() // ours ends once it has both BYEs
			require.False(t, c1.Paths().Bytestream)
		case 2:
			attach(t, c1, c2)
		}
	})
	done.Wait()
	st1, st2 := c1.Paths(), c2.Paths()
	t.Logf("alice %+v, bob %+v", st1, st2)
	require.Equal(t, 2, st1.Moves)
	require.Equal(t, 0, st1.Fallbacks)
	require.Greater(t, st1.SentOnBytestream, int64(n/2), "most of the bulk went on the bytestreams")
	require.Greater(t, st2.ReceivedOnBytestream, int64(n/2))
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())
}

// A bytestream cut at a random point in the middle of a transfer: the
// tunnel goes on over IQs, sends there what the bytestream did not
// acknowledge, and the bytes arrive exact.
func TestBytestreamCut(t *testing.T) {
	for seed := range uint64(4) {
		w := newWorld(t, nil)
		cfg := &transport.Config{Window: 1 << 20}
		a := w.join(t, alice, cfg)
		b := w.join(t, bob, cfg)
		c1, c2 := pipe(t, a, b)
		r := rand.New(rand.NewPCG(seed, 1))
		cutAt := int64(1<<20 + r.IntN(4<<20))
		var s1, s2 net.Conn
		flow(t, c1, c2, 8<<20, byte(seed), []int64{512 << 10, cutAt}, func(i int) {
			switch i {
			case 0:
				s1, s2 = attach(t, c1, c2)
			case 1:
				// The proxy or the network drops the connection.
				if seed%2 == 0 {
					s1.Close()
				} else {
					s2.Close()
				}
			}
		})
		st1 := c1.Paths()
		require.Equal(t, 1, st1.Fallbacks, "seed %d", seed)
		require.False(t, st1.Bytestream)
		require.NoError(t, c1.Close())
		require.NoError(t, c2.Close())
	}
}

// What is already on the bytestream when one end attaches late is read
// then; a second UseBytestream while one is attached is refused.
func TestBytestreamLateAttach(t *testing.T) {
	w := newWorld(t, nil)
	a := w.join(t, alice, nil)
	b := w.join(t, bob, nil)
	c1, c2 := pipe(t, a, b)
	s1, s2 := tcpPair(t)
	require.NoError(t, c1.UseBytestream(s1))
	require.Error(t, c1.UseBytestream(s1), "already on a bytestream")
	msg := bytes.Repeat([]byte("x"), 100<<10)
	_, err := c1.Write(msg)
	require.NoError(t, err)
	require.NoError(t, c2.UseBytestream(s2))
	got := make([]byte, len(msg))
	_, err = io.ReadFull(c2, got)
	require.NoError(t, err)
	require.Equal(t, msg, got)
	require.Equal(t, int64(len(msg)), c2.Paths().ReceivedOnBytestream)
	require.NoError(t, c1.Close())
	require.NoError(t, c2.Close())
}

// A DATA frame above the receiver's block-size is a teardown on the
// bytestream as a data element would be on IQs (D4): the receiver never
// buffers more per block than it announced.
func TestBytestreamBlockSize(t *testing.T) {
	w := newWorld(t, nil)
	a := w.join(t, alice, nil)
	b := w.join(t, bob, &transport.Config{BlockSize: 4096})
	_, c2 := pipe(t, a, b)
	raw, s2 := tcpPair(t)
	require.NoError(t, c2.UseBytestream(s2))
	fr, err := bsframe.AppendFrame(nil, bsframe.Frame{Type: bsframe.Data, ID: 1, Seq: 0, Payload: make([]byte, 4097)})
	require.NoError(t, err)
	_, err = raw.Write(fr)
	require.NoError(t, err)
	_, err = c2.Read(make([]byte, 1))
	require.Error(t, err)
	require.ErrorContains(t, err, "block-size")
}
