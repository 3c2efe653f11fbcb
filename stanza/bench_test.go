package stanza_test

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"io"
	"testing"

	"mellium.im/xmlstream"

	"github.com/xmppxtls/xtls/stanza"
)

// The sizes the transport uses: its default chunk, and the largest block.
var benchSizes = []int{5120, stanza.MaxBlockSize}

// BenchmarkEncodeData encodes a data element into an xml.Encoder with a
// reused Base64 buffer, as the transport's send path does. A regression
// guard: MB/s and allocs/op (a small constant, independent of the size).
func BenchmarkEncodeData(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			d := stanza.Data{SID: "s1", Seq: 7, Payload: bytes.Repeat([]byte{0xa5}, n)}
			buf := make([]byte, 0, base64.StdEncoding.EncodedLen(n))
			e := xml.NewEncoder(io.Discard)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				r := d.TokenReaderBuf(buf)
				if _, err := xmlstream.Copy(e, r); err != nil {
					b.Fatal(err)
				}
				if err := e.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeData decodes a data element straight from the XML
// decoder's tokens into a reused buffer, as the receive path does.
func BenchmarkDecodeData(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			d := stanza.Data{SID: "s1", Seq: 7, Payload: bytes.Repeat([]byte{0xa5}, n)}
			var wire bytes.Buffer
			e := xml.NewEncoder(&wire)
			if _, err := xmlstream.Copy(e, d.TokenReader()); err != nil {
				b.Fatal(err)
			}
			e.Flush()
			raw := wire.Bytes()
			out := make([]byte, 0, stanza.MaxBlockSize+2) // DecodePayload needs max+2
			// One decoder reads element after element, as a session's does.
			dec := xml.NewDecoder(&repeat{raw: raw})
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				tok, err := dec.Token()
				if err != nil {
					b.Fatal(err)
				}
				start := tok.(xml.StartElement)
				got, err := stanza.DecodeData(&start, dec, stanza.MaxBlockSize, out[:0])
				if err != nil || len(got.Payload) != n {
					b.Fatal(err, len(got.Payload))
				}
			}
		})
	}
}

// repeat reads raw again and again.
type repeat struct {
	raw []byte
	off int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := copy(p, r.raw[r.off:])
	r.off = (r.off + n) % len(r.raw)
	return n, nil
}

func sizeName(n int) string {
	if n == stanza.MaxBlockSize {
		return "block=max"
	}
	return "chunk=5120"
}
