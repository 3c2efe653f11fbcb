//go:build !linux

package transport

import "net"

func quickAck(c *net.TCPConn) net.Conn { return c }

func ackFor(net.Conn) func() { return nil }
