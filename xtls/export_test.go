package xtls

import "net"

// SetAckFor replaces how a new Handler finds the function that flushes its
// session's delayed ACKs, until restore is called.
func SetAckFor(f func(net.Conn) func()) (restore func()) {
	old := ackFor
	ackFor = f
	return func() { ackFor = old }
}
