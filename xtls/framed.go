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
	d := &demux{c: c, notify: make(chan struct{})}
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
type demux struct {
	c *Conn

	mu       sync.Mutex
	buf      []byte
	off      int
	err      error // what Read returns once buf is empty
	deadline time.Time
	timer    *time.Timer
	notify   chan struct{} // closed and replaced on every change
}

// changed wakes everyone waiting on d. d.mu is held.
func (d *demux) changed() {
	close(d.notify)
	d.notify = make(chan struct{})
}

func (d *demux) setDeadline(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deadline = t
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if !t.IsZero() {
		if wait := time.Until(t); wait > 0 {
			d.timer = time.AfterFunc(wait, func() {
				d.mu.Lock()
				d.changed()
				d.mu.Unlock()
			})
		}
	}
	d.changed()
}

// read is Conn.Read on a framed Conn.
func (d *demux) read(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if n := len(d.buf) - d.off; n > 0 {
			if len(p) == 0 {
				return 0, nil
			}
			k := copy(p, d.buf[d.off:])
			d.off += k
			if d.off == len(d.buf) {
				d.buf, d.off = d.buf[:0], 0
				if cap(d.buf) > 4*maxAppRecord {
					d.buf = nil // a burst's buffer is not kept while idle
				}
			}
			d.changed() // room for the demultiplexer
			return k, nil
		}
		if d.err != nil {
			return 0, d.err
		}
		if !d.deadline.IsZero() && !time.Now().Before(d.deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		ch := d.notify
		d.mu.Unlock()
		<-ch
		d.mu.Lock()
	}
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
		d.changed()
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
		// The body's buffer is taken only once a header has come: an
		// idle tunnel holds none.
		bp := recordPool.Get().(*[]byte)
		body := (*bp)[:n]
		if _, err := io.ReadFull(c.tls, body); err != nil {
			recordPool.Put(bp)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			fail(err)
			return
		}
		if typ != recApp {
			if typ <= recRefuse {
				c.paths.record(c, typ, append([]byte(nil), body...))
			}
			recordPool.Put(bp)
			continue
		}
		d.mu.Lock()
		for len(d.buf)-d.off+n > recvBufMax && d.err == nil {
			ch := d.notify
			d.mu.Unlock()
			<-ch
			d.mu.Lock()
		}
		if d.off > 0 && d.off == len(d.buf) {
			d.buf, d.off = d.buf[:0], 0
		}
		d.buf = append(d.buf, body...)
		d.changed()
		d.mu.Unlock()
		recordPool.Put(bp)
	}
}

// stop makes a Read that waits, and every later one, return err (Close).
func (d *demux) stop(err error) {
	d.mu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.buf, d.off = nil, 0
	d.changed()
	d.mu.Unlock()
}

// recordPool holds the buffers Write frames the application's bytes in.
var recordPool = sync.Pool{New: func() any { b := make([]byte, 0, 3+maxAppRecord); return &b }}

// writeApp writes p as APP records, each one TLS record.
func (c *Conn) writeApp(p []byte) (int, error) {
	bp := recordPool.Get().(*[]byte)
	defer recordPool.Put(bp)
	written := 0
	for written < len(p) {
		n := min(len(p)-written, maxAppRecord)
		b := append((*bp)[:0], recApp, byte(n>>8), byte(n))
		b = append(b, p[written:written+n]...)
		*bp = b
		if _, err := c.tls.Write(b); err != nil {
			return written, err
		}
		written += n
	}
	return written, nil
}

// writeRecord writes one control record.
func (c *Conn) writeRecord(typ byte, body []byte) error {
	if len(body) > maxControlRecord {
		return fmt.Errorf("%w: control record of %d bytes", errRecord, len(body))
	}
	b := make([]byte, 0, 3+len(body))
	b = append(b, typ, byte(len(body)>>8), byte(len(body)))
	_, err := c.tls.Write(append(b, body...))
	return err
}
