package transport

import (
	"crypto/tls"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client *net.TCPConn, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	s, ok := <-accepted
	require.True(t, ok)
	t.Cleanup(func() { s.Close() })
	return c.(*net.TCPConn), s
}

// quickAckOpt sets c's TCP_QUICKACK to set, or with set < 0 returns it.
func quickAckOpt(t *testing.T, c *net.TCPConn, set int) (v int) {
	t.Helper()
	raw, err := c.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, raw.Control(func(fd uintptr) {
		if set >= 0 {
			err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, set)
			return
		}
		v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}))
	require.NoError(t, err)
	return v
}

// QuickAck sets TCP_QUICKACK again after each read (the kernel clears it
// on its own), and leaves other connections alone.
func TestQuickAck(t *testing.T) {
	c, s := tcpPair(t)
	q := QuickAck(c)
	require.IsType(t, &quickAckConn{}, q)
	for i := range 3 {
		quickAckOpt(t, c, 0) // as the kernel does when it leaves quick-ack mode
		_, err := s.Write([]byte{byte(i)})
		require.NoError(t, err)
		var b [1]byte
		_, err = q.Read(b[:])
		require.NoError(t, err)
		require.Equal(t, byte(i), b[0])
		require.Equal(t, 1, quickAckOpt(t, c, -1), "read %d", i)
	}

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	require.Equal(t, p1, QuickAck(p1))
}

// ackFor finds the TCP socket under a TLS connection and sets
// TCP_QUICKACK on it (Linux then sends a pending ACK at once); it leaves
// connections that QuickAck already wraps, and non-TCP ones, alone.
func TestAckFor(t *testing.T) {
	c, _ := tcpPair(t)
	ack := ackFor(tls.Client(c, &tls.Config{ServerName: "example.org"}))
	require.NotNil(t, ack)
	quickAckOpt(t, c, 0)
	require.Equal(t, 0, quickAckOpt(t, c, -1))
	ack()
	require.Equal(t, 1, quickAckOpt(t, c, -1))

	require.Nil(t, ackFor(tls.Client(QuickAck(c), &tls.Config{ServerName: "example.org"})))
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	require.Nil(t, ackFor(p1))
	require.Nil(t, ackFor(nil))
}
