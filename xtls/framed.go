package xtls

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"mellium.im/xmpp/stanza"
)

// Contract 4 (ALPN "xmpp-xtls/4") frames what travels inside TLS after the
// verdict, so that the two ends can talk about the tunnel itself (moving it
// onto a bytestream, path.go) beside the application's bytes, authenticated
// and hidden from the servers. Each record is a type byte, a 16-bit
// big-endian length and that many bytes of body:
//
//	0x10 APP     the application's bytes (1 to maxAppRecord)
//	0x11 OFFER   a bytestream offer (path.go)
//	0x12 ACCEPT  the answer that takes it
//	0x13 REFUSE  the answer that does not
//
// A record of another type below 0x80 is a violation (the tunnel is aborted,
// policy-violation); one of 0x80 or above is ignored, for extensions.
//
// One goroutine per framed Conn, its demultiplexer, reads the records as
// they come: application bytes wait in a bounded buffer for Read (when it
// is full, the demultiplexer waits, and so does the peer, through the
// transport's credit), control records go to the path negotiation at once,
// even while the application does not read.

// alpnContract4 is the ALPN protocol ID of contract 4.
const alpnContract4 = "xmpp-xtls/4"

const (
	recApp    = 0x10
	recOffer  = 0x11
	recAccept = 0x12
	recRefuse = 0x13

	// maxAppRecord is the largest body of an APP record: with its header
	// it fills one TLS record's 16384 bytes of plaintext.
	maxAppRecord = 16384 - 3
	// maxControlRecord bounds the body of a control record.
	maxControlRecord = 4096
	// recvBufMax bounds the application bytes the demultiplexer holds for
	// Read.
	recvBufMax = 256 << 10
)

// errRecord is the cause of an abort for a record that breaks the rules.
var errRecord = errors.New("xtls: malformed record inside TLS")

// framed reports whether c runs contract 4's records.
func (c *Conn) framed() bool { return c.demux != nil }

// startDemux starts the demultiplexer once the verdict is through.
func (c *Conn) startDemux() {
	d := &demux{
		c:        c,
		readable: make(chan struct{}, 1),
		writable: make(chan struct{}, 1),
		waitSem:  make(chan struct{}, 1),
	}
	c.mu.Lock()
	rdl := c.readDeadline
	c.mu.Unlock()
	// Read deadlines now apply to the buffer, not to the TLS reads.
	_ = c.tls.SetReadDeadline(time.Time{})
	d.setDeadline(rdl)
	c.demux = d
	go d.run()
}

// demux reads contract 4 records and holds application bytes for Read.
//
// The application's bytes wait in a queue of chunks from recordPool: the
// demultiplexer reads an APP record's body from TLS straight into the free
// space at the queue's tail (reserved under mu, filled without it), Read
// copies from its head, and a chunk goes back to the pool as soon as it has
// been read (a tunnel that is idle and read holds none). Waits are on
// capacity-1 channels, signalled only when someone waits: no allocation
// per record or per Read.
type demux struct {
	c *Conn

	// waitSem serialises the Reads that wait, so that one at a time waits
	// on readable (a channel, not a mutex: a goroutine blocked on it is
	// durably blocked for testing/synctest).
	waitSem chan struct{}

	mu sync.Mutex
	// q holds the application bytes: (*q[0])[r:] and all of the later
	// chunks, n bytes in all. While filling, the demultiplexer writes
	// past the length of the tail chunks (outside mu): a chunk that is
	// not full is then not given back, even once read.
	q        []*[]byte
	r, n     int
	filling  bool
	need     int   // the demultiplexer waits for room for need bytes
	waiting  bool  // a Read waits on readable
	err      error // what Read returns once the queue is empty
	stopped  bool  // Close: what arrives is dropped
	deadline time.Time
	timer    *time.Timer

	readable chan struct{} // bytes, an error, a new deadline: for Read
	writable chan struct{} // room, or Close: for the demultiplexer
}

// signal wakes the one that waits on ch, if any, now or when it comes to
// wait.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wakeReader wakes a Read that waits. d.mu is held.
func (d *demux) wakeReader() {
	if d.waiting {
		signal(d.readable)
	}
}

func (d *demux) setDeadline(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deadline = t
	if d.timer != nil {
		d.timer.Stop()
	}
	if !t.IsZero() {
		if wait := time.Until(t); wait > 0 {
			// A timer that fires late, for a deadline since moved, only
			// makes Read look again.
			if d.timer == nil {
				d.timer = time.AfterFunc(wait, func() { signal(d.readable) })
			} else {
				d.timer.Reset(wait)
			}
		}
	}
	signal(d.readable)
}

// read is Conn.Read on a framed Conn.
func (d *demux) read(p []byte) (int, error) {
	d.mu.Lock()
	if d.n > 0 {
		k := d.take(p)
		d.mu.Unlock()
		return k, nil
	}
	d.mu.Unlock()
	// Nothing to read: wait, one Read at a time.
	d.waitSem <- struct{}{}
	defer func() { <-d.waitSem }()
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if d.n > 0 {
			return d.take(p), nil
		}
		if d.err != nil {
			return 0, d.err
		}
		if !d.deadline.IsZero() && !time.Now().Before(d.deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		d.waiting = true
		d.mu.Unlock()
		<-d.readable
		d.mu.Lock()
		d.waiting = false
	}
}

// take copies queued bytes into p. d.mu is held and d.n > 0.
func (d *demux) take(p []byte) int {
	k := 0
	for k < len(p) && d.n > 0 {
		head := *d.q[0]
		m := copy(p[k:], head[d.r:])
		k += m
		d.r += m
		d.n -= m
		if d.r == len(head) && !d.release() {
			break
		}
	}
	if !d.filling {
		d.trim() // an empty chunk left by a record cut short
	}
	if d.need > 0 && d.n+d.need <= recvBufMax {
		signal(d.writable)
	}
	return k
}

// release gives the read head chunk back to the pool, unless the
// demultiplexer may still write into it, and reports whether it did.
// d.mu is held.
func (d *demux) release() bool {
	head := d.q[0]
	if d.filling && len(*head) < cap(*head) {
		return false
	}
	*head = (*head)[:0]
	recordPool.Put(head)
	copy(d.q, d.q[1:])
	d.q[len(d.q)-1] = nil
	d.q = d.q[:len(d.q)-1]
	d.r = 0
	return true
}

// trim gives back the chunks that are read or empty. d.mu is held and
// the demultiplexer is not filling.
func (d *demux) trim() {
	for len(d.q) > 0 && d.r == len(*d.q[0]) {
		d.release()
	}
}

// space is where the demultiplexer reads an APP record's body: the free
// space of the queue's tail chunk ta and, if that is short, the start of a
// new chunk tb. Neither goes back to the pool while it is filled: it is
// not full.
type space struct {
	ta, tb *[]byte
	a, b   []byte
}

// reserve waits for room for an APP record's n bytes, then returns where
// they go. ok is false if Close came first.
func (d *demux) reserve(n int) (s space, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.n+n > recvBufMax && !d.stopped {
		d.need = n
		d.mu.Unlock()
		<-d.writable
		d.mu.Lock()
		d.need = 0
	}
	if d.stopped {
		return s, false
	}
	d.filling = true
	if len(d.q) > 0 {
		t := d.q[len(d.q)-1]
		if free := cap(*t) - len(*t); free > 0 {
			s.ta, s.a = t, (*t)[len(*t):len(*t)+min(free, n)]
		}
	}
	if len(s.a) < n {
		t := recordPool.Get().(*[]byte)
		*t = (*t)[:0]
		d.q = append(d.q, t)
		s.tb, s.b = t, (*t)[:n-len(s.a)]
	}
	return s, true
}

// commit ends the filling of s: if complete, its bytes become readable
// (unless Close came first), otherwise they are dropped.
func (d *demux) commit(s space, complete bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.filling = false
	if complete && !d.stopped {
		if s.ta != nil {
			*s.ta = (*s.ta)[:len(*s.ta)+len(s.a)]
		}
		if s.tb != nil {
			*s.tb = (*s.tb)[:len(s.b)]
		}
		d.n += len(s.a) + len(s.b)
		d.wakeReader()
	}
	d.trim()
}

// run is the demultiplexer goroutine.
func (d *demux) run() {
	c := d.c
	var hdr [3]byte
	fail := func(err error) {
		if err == io.EOF && c.raw.eof.Load() {
			err = ErrTruncated
		}
		d.mu.Lock()
		d.err = err
		d.wakeReader()
		d.mu.Unlock()
		c.paths.closed()
	}
	for {
		if _, err := io.ReadFull(c.tls, hdr[:]); err != nil {
			if err == io.ErrUnexpectedEOF {
				err = fmt.Errorf("%w: cut inside a record header", errRecord)
				c.raw.Conn.Abort(stanza.PolicyViolation, err.Error())
			}
			fail(err)
			return
		}
		typ, n := hdr[0], int(binary.BigEndian.Uint16(hdr[1:]))
		var bad string
		switch {
		case typ == recApp && (n == 0 || n > maxAppRecord):
			bad = fmt.Sprintf("APP record of %d bytes", n)
		case typ != recApp && n > maxControlRecord:
			bad = fmt.Sprintf("record 0x%02x of %d bytes", typ, n)
		case typ < 0x80 && (typ < recApp || typ > recRefuse):
			bad = fmt.Sprintf("unknown record type 0x%02x", typ)
		}
		if bad != "" {
			err := fmt.Errorf("%w: %s", errRecord, bad)
			c.raw.Conn.Abort(stanza.PolicyViolation, err.Error())
			fail(err)
			return
		}
		var err error
		if typ == recApp {
			err = d.readApp(n)
		} else {
			err = d.readControl(typ, n)
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			fail(err)
			return
		}
	}
}

// readApp reads an APP record's body of n bytes into the queue.
func (d *demux) readApp(n int) error {
	s, ok := d.reserve(n)
	if !ok {
		// Closed: nobody reads, but the records go on (control ones).
		return d.discard(n)
	}
	_, err := io.ReadFull(d.c.tls, s.a)
	if err == nil && len(s.b) > 0 {
		_, err = io.ReadFull(d.c.tls, s.b)
	}
	d.commit(s, err == nil)
	return err
}

// readControl reads a control record's body of n bytes and hands it to the
// path negotiation (or ignores it, for a type it does not know).
func (d *demux) readControl(typ byte, n int) error {
	if typ > recRefuse {
		return d.discard(n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(d.c.tls, body); err != nil {
		return err
	}
	d.c.paths.record(d.c, typ, body)
	return nil
}

// discard reads and drops n bytes of a record's body.
func (d *demux) discard(n int) error {
	bp := recordPool.Get().(*[]byte)
	defer recordPool.Put(bp)
	_, err := io.ReadFull(d.c.tls, (*bp)[:n])
	return err
}

// stop makes a Read that waits, and every later one, return err (Close);
// bytes not read yet, and any that come later, are dropped.
func (d *demux) stop(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
	}
	d.stopped = true
	d.n = 0
	if len(d.q) > 0 {
		d.r = len(*d.q[0])
	}
	for len(d.q) > 0 && d.release() {
		if len(d.q) > 0 {
			d.r = len(*d.q[0])
		}
	}
	signal(d.readable)
	signal(d.writable)
}
