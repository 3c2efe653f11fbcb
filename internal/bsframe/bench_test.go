package bsframe_test

import (
	"io"
	"testing"

	"github.com/xmppxtls/xtls/internal/bsframe"
)

// block16K is a Data frame with a 16 KiB payload: a full TLS record's worth.
var block16K = bsframe.Frame{Type: bsframe.Data, ID: 1, Seq: 1, Payload: make([]byte, 16<<10)}

// AppendFrame into a reused buffer: header plus a copy of the payload.
func BenchmarkAppendData16K(b *testing.B) {
	b.SetBytes(int64(len(block16K.Payload)))
	b.ReportAllocs()
	buf := make([]byte, 0, bsframe.MaxFrame)
	for b.Loop() {
		var err error
		if buf, err = bsframe.AppendFrame(buf[:0], block16K); err != nil {
			b.Fatal(err)
		}
	}
}

// Writer to io.Discard, flushed after every frame.
func BenchmarkWriteData16K(b *testing.B) {
	b.SetBytes(int64(len(block16K.Payload)))
	b.ReportAllocs()
	w := bsframe.NewWriter(io.Discard)
	for b.Loop() {
		if err := w.WriteFrame(block16K); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
	}
}

// Reader from an endless stream of the same frame.
func BenchmarkReadData16K(b *testing.B) {
	enc, err := bsframe.AppendFrame(nil, block16K)
	if err != nil {
		b.Fatal(err)
	}
	r := bsframe.NewReader(&cycle{b: enc})
	b.SetBytes(int64(len(block16K.Payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}
