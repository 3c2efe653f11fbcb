package main

import (
	"net"

	"golang.org/x/sys/unix"
)

// bytesWritten is how many bytes have been written to c's socket: what
// the kernel has sent (tcpi_bytes_sent, retransmissions included, of which
// loopback has none) and what waits in its send buffer (tcpi_notsent_bytes).
// It returns -1 if the kernel cannot tell. It reads the socket's counters
// rather than wrapping the connection, which would hide the TCP connection
// from the Handler's quick ACK.
func bytesWritten(c *net.TCPConn) int64 {
	if c == nil {
		return -1
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return -1
	}
	n := int64(-1)
	raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil && info.Bytes_sent > 0 {
			n = int64(info.Bytes_sent) + int64(info.Notsent_bytes)
		}
	})
	return n
}
