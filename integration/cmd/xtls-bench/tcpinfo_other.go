//go:build !linux

package main

import "net"

// bytesWritten is not measured outside Linux.
func bytesWritten(c *net.TCPConn) int64 { return -1 }
