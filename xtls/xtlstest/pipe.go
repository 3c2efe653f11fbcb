package xtlstest

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// newPipe returns the two ends of an in-memory, full-duplex connection.
//
// Unlike net.Pipe it is buffered and asynchronous: a Write returns as soon as
// its bytes are in the buffer of its direction, and blocks only while that
// buffer is full (a limit of 0 means unlimited). Deadlines work as on a TCP
// connection and every wait is a channel operation or a timer, so the pipe can
// be used inside a testing/synctest bubble. It follows x/net/http2's
// synctestNetPipe and quic-go's stream: state under a mutex that is never held
// while waiting, capacity-1 signal channels that never lose a wake-up, and a
// capacity-1 channel that serializes concurrent writers.
//
// aLimit bounds the bytes written by a and not yet read by b, bLimit the
// other direction.
func newPipe(aAddr, bAddr net.Addr, aLimit, bLimit int) (a, b *pipeConn) {
	ab := newHalf(aLimit) // written by a, read by b
	ba := newHalf(bLimit) // written by b, read by a
	a = &pipeConn{in: ba, out: ab, laddr: aAddr, raddr: bAddr}
	b = &pipeConn{in: ab, out: ba, laddr: bAddr, raddr: aAddr}
	return a, b
}

// pipeAddr is the net.Addr of a pipe end: an XMPP address or a domain.
type pipeAddr string

func (a pipeAddr) Network() string { return "xtlstest" }
func (a pipeAddr) String() string  { return string(a) }

// pipeConn is one end of a pipe made by newPipe.
type pipeConn struct {
	in, out      *half
	laddr, raddr net.Addr
}

var _ net.Conn = (*pipeConn)(nil)

// half is one direction of a pipe.
type half struct {
	mu       sync.Mutex
	buf      []byte // unread bytes are buf[r:]
	r        int
	limit    int  // 0: unlimited
	rclosed  bool // the reading end was closed
	wclosed  bool // the writing end was closed
	readable chan struct{}
	writable chan struct{}
	wsem     chan struct{} // serializes writers

	rdl, wdl deadline // deadlines of the reading and writing end
}

func newHalf(limit int) *half {
	h := &half{
		limit:    limit,
		readable: make(chan struct{}, 1),
		writable: make(chan struct{}, 1),
		wsem:     make(chan struct{}, 1),
	}
	h.rdl.init()
	h.wdl.init()
	return h
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read reads data from the connection.
func (c *pipeConn) Read(p []byte) (int, error) {
	h := c.in
	for {
		if h.rdl.expired() {
			return 0, os.ErrDeadlineExceeded
		}
		h.mu.Lock()
		switch {
		case h.rclosed:
			h.mu.Unlock()
			return 0, net.ErrClosed
		case len(h.buf) > h.r:
			if len(p) == 0 {
				h.mu.Unlock()
				return 0, nil
			}
			n := copy(p, h.buf[h.r:])
			h.r += n
			if h.r == len(h.buf) {
				h.buf, h.r = h.buf[:0], 0
			} else {
				signal(h.readable) // for another reader
			}
			h.mu.Unlock()
			signal(h.writable)
			return n, nil
		case h.wclosed:
			h.mu.Unlock()
			return 0, io.EOF
		}
		h.mu.Unlock()
		select {
		case <-h.readable:
		case <-h.rdl.wait():
		}
	}
}

// Write writes data to the connection. It blocks while the buffer of its
// direction is full and keeps no reference to p once it has returned.
func (c *pipeConn) Write(p []byte) (n int, err error) {
	h := c.out
	select {
	case h.wsem <- struct{}{}:
	default:
		select {
		case h.wsem <- struct{}{}:
		case <-h.wdl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	defer func() { <-h.wsem }()
	for {
		if h.wdl.expired() {
			return n, os.ErrDeadlineExceeded
		}
		h.mu.Lock()
		switch {
		case h.wclosed:
			h.mu.Unlock()
			return n, net.ErrClosed
		case h.rclosed:
			h.mu.Unlock()
			return n, io.ErrClosedPipe
		}
		room := len(p) - n
		if h.limit > 0 {
			room = min(room, h.limit-(len(h.buf)-h.r))
		}
		if room > 0 {
			if h.r > 0 && h.r >= len(h.buf)/2 {
				h.buf = h.buf[:copy(h.buf, h.buf[h.r:])]
				h.r = 0
			}
			h.buf = append(h.buf, p[n:n+room]...)
			n += room
			h.mu.Unlock()
			signal(h.readable)
			if n == len(p) {
				return n, nil
			}
			continue
		}
		h.mu.Unlock()
		select {
		case <-h.writable:
		case <-h.wdl.wait():
		}
	}
}

// Close closes the connection: pending and future reads and writes on this
// end fail with net.ErrClosed, the peer reads what was written before, then
// io.EOF, and the peer's writes fail with io.ErrClosedPipe.
func (c *pipeConn) Close() error {
	for _, h := range []*half{c.in, c.out} {
		h.mu.Lock()
		if h == c.in {
			h.rclosed = true
			h.buf, h.r = nil, 0
		} else {
			h.wclosed = true
		}
		h.mu.Unlock()
		signal(h.readable)
		signal(h.writable)
	}
	return nil
}

// LocalAddr returns the address of this end.
func (c *pipeConn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns the address of the peer.
func (c *pipeConn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets the read and write deadlines.
func (c *pipeConn) SetDeadline(t time.Time) error {
	c.in.rdl.set(t)
	c.out.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline.
func (c *pipeConn) SetReadDeadline(t time.Time) error {
	c.in.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline.
func (c *pipeConn) SetWriteDeadline(t time.Time) error {
	c.out.wdl.set(t)
	return nil
}

// deadline turns a settable deadline into a channel that is closed when it
// passes. A pending wait sees a deadline moved later or earlier, because the
// channel is replaced only once it has been closed.
type deadline struct {
	mu    sync.Mutex
	gen   uint64 // identifies the current setting, so a stale timer does nothing
	timer *time.Timer
	c     chan struct{}
	fired bool // c is closed
}

func (d *deadline) init() { d.c = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.fired {
		d.c, d.fired = make(chan struct{}), false
	}
	if t.IsZero() {
		return
	}
	wait := time.Until(t)
	if wait <= 0 {
		close(d.c)
		d.fired = true
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(wait, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen && !d.fired {
			close(d.c)
			d.fired = true
		}
	})
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

func (d *deadline) expired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fired
}
