package transport

import (
	"crypto/tls"
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

func (q *quickAckConn) arm() { setQuickAck(q.raw) }

// Read reads and re-arms TCP_QUICKACK.
func (q *quickAckConn) Read(p []byte) (int, error) {
	n, err := q.TCPConn.Read(p)
	q.arm()
	return n, err
}

// setQuickAck sets TCP_QUICKACK. When an ACK is pending, Linux sends it
// right away (tcp_sock_set_quickack), which is the point: called after the
// data has been read, it acknowledges that data now rather than ~40 ms
// later.
func setQuickAck(raw syscall.RawConn) {
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

// ackFor returns a function that acknowledges at once what c's TCP socket
// has received, or nil when c is not (a TLS connection over) TCP or is
// already wrapped by QuickAck.
func ackFor(c net.Conn) func() {
	for {
		switch t := c.(type) {
		case *tls.Conn:
			c = t.NetConn()
			continue
		case *quickAckConn:
			return nil
		case *net.TCPConn:
			raw, err := t.SyscallConn()
			if err != nil {
				return nil
			}
			return func() { setQuickAck(raw) }
		}
		return nil
	}
}
