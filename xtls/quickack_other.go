//go:build !linux

package xtls

import "net"

func quickAck(c *net.TCPConn) net.Conn { return c }

func ackNow(net.Conn) func() { return nil }
