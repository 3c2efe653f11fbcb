package xtlstest

import (
	"io"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"
)

// The pipe under every session is a conforming net.Conn when both
// directions are bounded (nettest needs Write to block eventually).
func TestPipeConformance(t *testing.T) {
	nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
		a, b := newPipe(pipeAddr("a"), pipeAddr("b"), 64<<10, 64<<10)
		return a, b, func() { a.Close(); b.Close() }, nil
	})
}

func TestPipeDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := newPipe(pipeAddr("a"), pipeAddr("b"), 4, 0)
		defer a.Close()
		defer b.Close()
		buf := make([]byte, 8)

		// A pending Read times out at the deadline, which can be moved
		// while it waits.
		start := time.Now()
		b.SetReadDeadline(start.Add(time.Second))
		go func() {
			time.Sleep(500 * time.Millisecond)
			b.SetReadDeadline(start.Add(3 * time.Second))
		}()
		_, err := b.Read(buf)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
		require.Equal(t, 3*time.Second, time.Since(start))

		// A deadline in the past fails at once, even with data to read;
		// clearing it makes the connection usable again.
		_, err = a.Write([]byte("abc"))
		require.NoError(t, err)
		b.SetReadDeadline(time.Unix(1, 0))
		_, err = b.Read(buf)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		b.SetReadDeadline(time.Time{})
		k, err := b.Read(buf)
		require.NoError(t, err)
		require.Equal(t, "abc", string(buf[:k]))

		// a→b holds 4 bytes: a Write blocks past that, until its deadline.
		start = time.Now()
		a.SetWriteDeadline(start.Add(time.Second))
		k, err = a.Write([]byte("123456"))
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.Equal(t, 4, k)
		require.Equal(t, time.Second, time.Since(start))
		a.SetWriteDeadline(time.Time{})

		// b→a is unbounded: a Write never blocks.
		_, err = b.Write(make([]byte, 1<<20))
		require.NoError(t, err)

		// Close unblocks a pending Read and Write on the same end; the peer
		// reads what was written, then io.EOF.
		go func() {
			time.Sleep(time.Second)
			a.Close()
		}()
		_, err = a.Write([]byte("x"))
		require.ErrorIs(t, err, net.ErrClosed)
		k, err = b.Read(buf)
		require.NoError(t, err)
		require.Equal(t, "1234", string(buf[:k]))
		_, err = b.Read(buf)
		require.ErrorIs(t, err, io.EOF)
		_, err = b.Write([]byte("x"))
		require.ErrorIs(t, err, io.ErrClosedPipe)
		_, err = a.Read(buf)
		require.ErrorIs(t, err, net.ErrClosed)
	})
}
