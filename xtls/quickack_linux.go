package xtls

import (
	"net"
	"syscall"
)

// quickAckConn re-arms TCP_QUICKACK after every read: the kernel clears it
// by itself.
type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func quickAck(c *net.TCPConn) net.Conn {
	raw, err := c.SyscallConn()
	if err != nil {
		return c
	}
	q := &quickAckConn{TCPConn: c, raw: raw}
	q.arm()
	return q
}

func (q *quickAckConn) arm() {
	_ = q.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

// Read reads and re-arms TCP_QUICKACK.
func (q *quickAckConn) Read(p []byte) (int, error) {
	n, err := q.TCPConn.Read(p)
	q.arm()
	return n, err
}
