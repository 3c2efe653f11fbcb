package xtls

import (
	"fmt"
	"sync"
)

// The write side of contract 4's records. Records enter TLS one at a time
// through a gate that lets a control record (a bytestream OFFER, ACCEPT or
// REFUSE) go before the next APP record, so that a move is not queued
// behind the file it is meant to speed up. A record in TLS cannot be
// overtaken, so a control record may still wait for the APP record being
// written: APP records are therefore one transport block (within
// minAppRecord and maxAppRecord), which on a slow path (a server's shaper
// of a few kB/s) is about what leaves in 200 ms once the path is measured,
// on a bytestream large enough that records stay full, and on the IQ path
// otherwise what the server's software reads best (2880 bytes on Prosody:
// TLS and the header then add 0.9 %).

// minAppRecord is the smallest APP record body Write makes on a slow path
// (TLS adds 22 bytes and the header 3: 2.4 %).
const minAppRecord = 1024

// writeGate lets one record at a time into TLS, control records first.
type writeGate struct {
	mu   sync.Mutex
	cond sync.Cond
	busy bool
	ctrl int // control records waiting
}

// enter waits for the gate: a control record waits only for the record in
// TLS, an APP record also for the control records waiting.
func (g *writeGate) enter(control bool) {
	g.mu.Lock()
	if g.cond.L == nil {
		g.cond.L = &g.mu
	}
	if control {
		g.ctrl++
	}
	for g.busy || !control && g.ctrl > 0 {
		g.cond.Wait()
	}
	if control {
		g.ctrl--
	}
	g.busy = true
	g.mu.Unlock()
}

// leave opens the gate for the next record.
func (g *writeGate) leave() {
	g.mu.Lock()
	g.busy = false
	g.mu.Unlock()
	g.cond.Broadcast()
}

// appRecordSize is the APP record body size for the path as it is now.
func (c *Conn) appRecordSize() int {
	if c.raw.Conn == nil {
		return maxAppRecord // the framing's own tests run without a tunnel
	}
	return min(max(c.raw.Conn.BlockSize(), minAppRecord), maxAppRecord)
}

// recordPool holds the buffers Write frames the application's bytes in.
var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 3+maxAppRecord); return &b }}

// writeApp writes p as APP records, each one TLS record.
func (c *Conn) writeApp(p []byte) (int, error) {
	bp := recordPool.Get().(*[]byte)
	defer recordPool.Put(bp)
	g := &c.wgate
	written := 0
	for written < len(p) {
		g.enter(false)
		n := min(len(p)-written, c.appRecordSize())
		b := append((*bp)[:0], recApp, byte(n>>8), byte(n))
		b = append(b, p[written:written+n]...)
		*bp = b
		_, err := c.tls.Write(b)
		g.leave()
		if err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// writeRecord writes one control record, ahead of the APP records waiting.
func (c *Conn) writeRecord(typ byte, body []byte) error {
	if len(body) > maxControlRecord {
		return fmt.Errorf("%w: control record of %d bytes", errRecord, len(body))
	}
	b := make([]byte, 0, 3+len(body))
	b = append(b, typ, byte(len(body)>>8), byte(len(body)))
	c.wgate.enter(true)
	defer c.wgate.leave()
	_, err := c.tls.Write(append(b, body...))
	return err
}
