package xtls

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// QuickAck sets TCP_QUICKACK again after each read (the kernel clears it
// on its own), and leaves other connections alone.
func TestQuickAck(t *testing.T) {
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
	defer c.Close()
	s, ok := <-accepted
	require.True(t, ok)
	defer s.Close()

	q := QuickAck(c)
	require.IsType(t, &quickAckConn{}, q)
	set := func(v int) {
		raw, err := c.(*net.TCPConn).SyscallConn()
		require.NoError(t, err)
		require.NoError(t, raw.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, v)
		}))
		require.NoError(t, err)
	}
	quick := func() int {
		raw, err := c.(*net.TCPConn).SyscallConn()
		require.NoError(t, err)
		var v int
		require.NoError(t, raw.Control(func(fd uintptr) {
			v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
		}))
		require.NoError(t, err)
		return v
	}
	for i := range 3 {
		set(0) // as the kernel does when it leaves quick-ack mode
		_, err := s.Write([]byte{byte(i)})
		require.NoError(t, err)
		var b [1]byte
		_, err = q.Read(b[:])
		require.NoError(t, err)
		require.Equal(t, byte(i), b[0])
		require.Equal(t, 1, quick(), "read %d", i)
	}

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	require.Equal(t, p1, QuickAck(p1))
}
