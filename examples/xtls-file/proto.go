package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Frame types (see the package documentation).
const (
	frameOffer   = 'O' // S→R: the manifest (JSON)
	frameAccept  = 'A' // R→S: what the receiver has already (JSON)
	frameDecline = 'N' // R→S: no, with a reason (UTF-8)
	frameFile    = 'F' // S→R: the data of file I follows, from OFFSET
	frameData    = 'D' // S→R: bytes of the current file
	frameEnd     = 'E' // S→R: file I is complete; its SHA-256
	frameDone    = 'Z' // S→R: every file sent; the digest of the transfer
	frameOK      = 'K' // R→S: everything verified and written; the same digest
	frameAbort   = 'X' // either way: giving up, with a reason (UTF-8)
	frameAlive   = 'P' // either way, any time: still here (no body; skipped)
)

// keepAliveEvery is how long a side waits in silence (nothing read,
// nothing written) before it writes a keep-alive frame. Writing to a peer
// that has gone makes the tunnel fail, and so the wait ends: until the
// tunnels have keep-alives of their own, a receiver whose sender vanished
// would otherwise wait for ever.
var keepAliveEvery = 15 * time.Second

// Limits a peer cannot push us past.
const (
	blockSize     = 64 << 10 // the largest data frame: "one block"
	maxJSONFrame  = 64 << 20 // a manifest of about a million files
	maxTextFrame  = 4096     // a reason
	maxEntries    = 1 << 20
	maxPathLength = 4096
	version       = 1
)

// partSuffix marks a file that is still arriving.
const partSuffix = ".xtls-part"

// Entry is one file or folder of the manifest. Path is relative, with
// slashes, and names the folders above it before it.
type Entry struct {
	Path string `json:"path"`
	Size int64  `json:"size,omitempty"`
	// Mode is the permission bits; only the executable bits are kept.
	Mode uint32 `json:"mode,omitempty"`
	Dir  bool   `json:"dir,omitempty"`
}

// Offer is the manifest.
type Offer struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

// Total is the size of all files.
func (o *Offer) Total() int64 {
	var t int64
	for _, e := range o.Entries {
		t += e.Size
	}
	return t
}

// Have is what the receiver already has of file I: its first N bytes,
// whose SHA-256 is Hash.
type Have struct {
	I    int    `json:"i"`
	N    int64  `json:"n"`
	Hash []byte `json:"sha256"`
}

// Accept is the receiver's yes.
type Accept struct {
	Have []Have `json:"have,omitempty"`
}

// ProtocolError is a peer that broke the protocol.
type ProtocolError struct{ Reason string }

// Error implements error.
func (e *ProtocolError) Error() string { return "protocol violation by the peer: " + e.Reason }

// AbortedError is the peer's abort frame.
type AbortedError struct{ Reason string }

// Error implements error.
func (e *AbortedError) Error() string { return "the peer aborted: " + e.Reason }

// DeclinedError is the receiver's no.
type DeclinedError struct{ Reason string }

// Error implements error.
func (e *DeclinedError) Error() string { return "the receiver declined: " + e.Reason }

func protocolErrorf(format string, a ...any) error {
	return &ProtocolError{Reason: fmt.Sprintf(format, a...)}
}

// check validates an offer from a peer: versions, path safety (relative,
// no "..", no part-file names, no duplicates, each folder before what it
// holds), sizes.
func (o *Offer) check() error {
	if o.Version != version {
		return protocolErrorf("version %d, want %d", o.Version, version)
	}
	if len(o.Entries) == 0 || len(o.Entries) > maxEntries {
		return protocolErrorf("%d entries", len(o.Entries))
	}
	seen := make(map[string]bool, len(o.Entries))
	dirs := make(map[string]bool)
	var total int64
	for i, e := range o.Entries {
		p := e.Path
		if len(p) == 0 || len(p) > maxPathLength || !filepath.IsLocal(filepath.FromSlash(p)) || path.Clean(p) != p ||
			strings.ContainsAny(p, "\\\x00") || strings.HasSuffix(p, partSuffix) {
			return protocolErrorf("entry %d: bad path %q", i, p)
		}
		if seen[p] {
			return protocolErrorf("entry %d: %q twice", i, p)
		}
		seen[p] = true
		if d := path.Dir(p); d != "." && !dirs[d] {
			return protocolErrorf("entry %d: %q before its folder", i, p)
		}
		if e.Dir {
			if e.Size != 0 {
				return protocolErrorf("entry %d: a folder with a size", i)
			}
			dirs[p] = true
			continue
		}
		if e.Size < 0 || total+e.Size < total {
			return protocolErrorf("entry %d: bad size %d", i, e.Size)
		}
		total += e.Size
	}
	return nil
}

// activity is when a side last read or wrote a frame (Unix nanoseconds).
type activity struct{ last atomic.Int64 }

func (a *activity) touch()              { a.last.Store(time.Now().UnixNano()) }
func (a *activity) idle() time.Duration { return time.Since(time.Unix(0, a.last.Load())) }

// frameWriter writes frames, one at a time, through a buffer if bw is
// set (then flush sends them).
type frameWriter struct {
	mu  sync.Mutex
	w   io.Writer
	bw  *bufio.Writer
	act *activity
}

// newFrameWriter returns a frame writer on w, buffered if asked.
func newFrameWriter(w io.Writer, buffered bool, act *activity) *frameWriter {
	fw := &frameWriter{w: w, act: act}
	if buffered {
		fw.bw = bufio.NewWriterSize(w, 4*blockSize)
		fw.w = fw.bw
	}
	return fw
}

// write writes one frame.
func (fw *frameWriter) write(typ byte, body []byte) error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(body)))
	var err error
	if fw.bw != nil {
		// The buffer joins them.
		if _, err = fw.bw.Write(h[:]); err == nil {
			_, err = fw.bw.Write(body)
		}
	} else {
		// One Write: one TLS record for a small frame.
		_, err = fw.w.Write(append(h[:], body...))
	}
	if fw.act != nil {
		fw.act.touch()
	}
	return err
}

// flush sends what the buffer holds.
func (fw *frameWriter) flush() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.bw == nil {
		return nil
	}
	return fw.bw.Flush()
}

// keepAlive writes a keep-alive frame whenever the side has been silent
// for keepAliveEvery, until stop.
func keepAlive(fw *frameWriter) (stop func()) {
	every := keepAliveEvery
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(every / 4)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if fw.act.idle() < every {
					continue
				}
				if fw.write(frameAlive, nil) != nil || fw.flush() != nil {
					return
				}
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// writeJSON writes v as a frame of type typ.
func (fw *frameWriter) writeJSON(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return fw.write(typ, b)
}

// frameReader reads frames.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
	act *activity
}

func newFrameReader(r io.Reader, act *activity) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 2*blockSize), act: act}
}

// maxBody is the largest body a frame of each type may have.
func maxBody(typ byte) (int, bool) {
	switch typ {
	case frameOffer, frameAccept:
		return maxJSONFrame, true
	case frameDecline, frameAbort:
		return maxTextFrame, true
	case frameFile:
		return 12, true
	case frameData:
		return blockSize, true
	case frameEnd:
		return 4 + sha256.Size, true
	case frameDone, frameOK:
		return sha256.Size, true
	case frameAlive:
		return 0, true
	}
	return 0, false
}

// next reads the next frame, skipping keep-alives. The body is valid
// until the next call. An abort frame is returned as an *AbortedError.
func (fr *frameReader) next() (byte, []byte, error) {
	for {
		typ, body, err := fr.one()
		if fr.act != nil {
			fr.act.touch()
		}
		if err != nil || typ != frameAlive {
			return typ, body, err
		}
	}
}

// one reads one frame.
func (fr *frameReader) one() (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(fr.r, h[:]); err != nil {
		return 0, nil, err
	}
	typ, n := h[0], binary.BigEndian.Uint32(h[1:])
	limit, ok := maxBody(typ)
	if !ok {
		return 0, nil, protocolErrorf("unknown frame type 0x%02x", typ)
	}
	if int64(n) > int64(limit) {
		return 0, nil, protocolErrorf("frame %c of %d bytes, at most %d", typ, n, limit)
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	body := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	if typ == frameAbort {
		return typ, body, &AbortedError{Reason: printable(string(body))}
	}
	return typ, body, nil
}

// expect reads a frame of type want (or an abort).
func (fr *frameReader) expect(want byte) ([]byte, error) {
	typ, body, err := fr.next()
	if err != nil {
		return nil, err
	}
	if typ != want {
		return nil, protocolErrorf("frame %c where %c was due", typ, want)
	}
	return body, nil
}

// printable keeps a peer's text from driving the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			return '?'
		}
		return r
	}, s)
}

// fileFrame encodes a file frame.
func fileFrame(i int, offset int64) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint32(b, uint32(i))
	binary.BigEndian.PutUint64(b[4:], uint64(offset))
	return b
}

// endFrame encodes an end frame.
func endFrame(i int, sum []byte) []byte {
	b := make([]byte, 4, 4+sha256.Size)
	binary.BigEndian.PutUint32(b, uint32(i))
	return append(b, sum...)
}
