package xtlstest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stream"
)

const testHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.net'>`

// frames runs a framer over r and returns the elements it found and the
// error that ended the stream.
func frames(r io.Reader) ([]string, error) {
	f := &framer{r: r}
	if err := f.header(); err != nil {
		return nil, err
	}
	var out []string
	for {
		raw, tagLen, err := f.next(0)
		if err != nil {
			return out, err
		}
		if tagLen <= 0 || tagLen > len(raw) || raw[tagLen-1] != '>' {
			return out, errors.New("bad tag length " + strconv.Itoa(tagLen))
		}
		out = append(out, string(raw))
	}
}

// reference splits the same stream with encoding/xml, as the network did
// before it had a framer. ok is false if encoding/xml rejects the stream or
// if it holds something the framer must reject.
func reference(stream []byte) (elems []string, ok bool) {
	d := xml.NewDecoder(bytes.NewReader(stream))
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, false
		}
		if _, ok := tok.(xml.StartElement); ok {
			break
		}
	}
	for {
		start := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return nil, false
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimLeft(t, " \t\r\n")) != 0 {
				return nil, false
			}
		case xml.EndElement:
			return elems, true
		case xml.StartElement:
			for depth := 1; depth > 0; {
				tok, err := d.Token()
				if err != nil {
					return nil, false
				}
				switch tok.(type) {
				case xml.StartElement:
					depth++
				case xml.EndElement:
					depth--
				case xml.CharData:
				default:
					return nil, false
				}
			}
			elems = append(elems, string(stream[start:d.InputOffset()]))
		default:
			return nil, false
		}
	}
}

var frameTests = [...]struct {
	body  string
	elems []string
	err   error
}{
	0: {body: ``},
	1: {body: ` <iq id='1'/>
<message to="a@b/c"><body>x &amp; y &gt; z</body><x xmlns='urn:x' a='>'/></message>`,
		elems: []string{`<iq id='1'/>`, `<message to="a@b/c"><body>x &amp; y &gt; z</body><x xmlns='urn:x' a='>'/></message>`}},
	2:  {body: `<message><body><![CDATA[<not></a>tag]]></body></message>`, elems: []string{`<message><body><![CDATA[<not></a>tag]]></body></message>`}},
	3:  {body: `<iq><a></b></iq>`, err: stream.NotWellFormed},
	4:  {body: `<iq><!-- no --></iq>`, err: stream.RestrictedXML},
	5:  {body: `<iq><?pi?></iq>`, err: stream.RestrictedXML},
	6:  {body: `text`, err: stream.BadFormat},
	7:  {body: `<iq a=b/>`, err: stream.NotWellFormed},
	8:  {body: `<iq a='1'b='2'/>`, elems: []string{`<iq a='1'b='2'/>`}}, // as encoding/xml
	9:  {body: `<iq a='<'/>`, err: stream.NotWellFormed},
	10: {body: `</iq>`, err: stream.NotWellFormed},
	11: {body: `<iq>`, err: io.ErrUnexpectedEOF},
}

func TestFramer(t *testing.T) {
	for i, tc := range frameTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			in := testHeader + tc.body
			if tc.err == nil {
				in += `</stream:stream>`
			}
			want := tc.err
			if want == nil {
				want = errStreamEnd
			}
			// Whole, and one byte at a time to stop at every position.
			for _, r := range []io.Reader{strings.NewReader(in), iotest.OneByteReader(strings.NewReader(in))} {
				elems, err := frames(r)
				require.ErrorIs(t, err, want)
				if tc.err == nil {
					require.Equal(t, tc.elems, elems)
				}
			}
		})
	}
}

// chunkReader returns its input in reads of the given sizes, in turn.
type chunkReader struct {
	b     []byte
	sizes []byte
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := len(r.b)
	if len(r.sizes) > 0 {
		n = int(r.sizes[r.i%len(r.sizes)]) + 1
		r.i++
	}
	n = min(n, len(p), len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// FuzzFramer checks the framer against encoding/xml: on every stream that
// encoding/xml accepts, the framer finds the same elements, whatever the
// sizes of the reads; on any other input it must not panic.
func FuzzFramer(f *testing.F) {
	for _, tc := range frameTests {
		f.Add([]byte(tc.body), []byte{0, 7, 200})
	}
	f.Add([]byte(`<iq type='set' id='x' to='b@example.net/b'><data xmlns='urn:xmpp:xtls:0' seq='1'>AAAA</data></iq>`), []byte{1})
	f.Fuzz(func(t *testing.T, body, sizes []byte) {
		in := append(append([]byte(testHeader), body...), `</stream:stream>`...)
		elems, err := frames(&chunkReader{b: in, sizes: sizes})
		want, ok := reference(in)
		if !ok {
			return
		}
		if !errors.Is(err, errStreamEnd) {
			t.Fatalf("framer failed with %v on a stream encoding/xml accepts", err)
		}
		if len(elems) != len(want) {
			t.Fatalf("framer found %q, encoding/xml %q", elems, want)
		}
		for i := range want {
			if elems[i] != want[i] {
				t.Fatalf("element %d: framer %q, encoding/xml %q", i, elems[i], want[i])
			}
		}
	})
}
