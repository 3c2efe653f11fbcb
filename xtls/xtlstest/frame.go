package xtlstest

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"

	"mellium.im/xmpp/stanza"
	"mellium.im/xmpp/stream"
)

var (
	errStreamEnd = errors.New("xtlstest: client closed its stream")
	errTooBig    = errors.New("xtlstest: stanza too big")
	errNeedMore  = errors.New("xtlstest: need more input")
)

// framer splits what a client sends into its stream header and its
// top-level elements, and keeps the bytes of each element so that it can be
// forwarded as it came.
//
// It is a small scanner rather than an encoding/xml Decoder with
// InputOffset, because the Decoder handles character data byte by byte: the
// network was then as slow as the two mellium sessions it connects (about
// 100 MB/s, and 8 MB/s under the race detector). The framer jumps from one
// '<' to the next with bytes.IndexByte and parses only tags. It checks what a
// router must: tags are well-formed and properly nested, attribute values
// are quoted, and there are no comments, processing instructions or DTDs
// (CDATA sections are allowed). It does not check the characters and entity
// references of text and attribute values; the receiving session does.
type framer struct {
	r   io.Reader
	buf []byte
	p   int // scanning position

	// The element being read, if tagEnd > 0.
	start  int      // its first byte; everything from there on is kept
	tagEnd int      // the end of its start tag, relative to start
	depth  int      // elements open
	names  []nameAt // their names, relative to start

	streamEnd   []byte // "</P:stream", P being the prefix of the header
	streamError []byte // "P:error"
}

type nameAt struct{ off, n int }

const minRead = 32 << 10

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

var (
	errNotWellFormed = stream.NotWellFormed
	errRestrictedXML = stream.RestrictedXML
)

// fill reads more input, keeping buf[start:]. More than limit bytes of one
// element (if limit > 0) is errTooBig.
func (f *framer) fill(limit int) error {
	if limit > 0 && len(f.buf)-f.start > limit {
		return errTooBig
	}
	if cap(f.buf)-len(f.buf) < minRead {
		if k := f.start; k > 0 {
			f.buf = f.buf[:copy(f.buf, f.buf[k:])]
			f.start, f.p = 0, f.p-k
		}
		if cap(f.buf)-len(f.buf) < minRead {
			nb := make([]byte, len(f.buf), max(2*cap(f.buf), len(f.buf)+2*minRead))
			copy(nb, f.buf)
			f.buf = nb
		}
	}
	for {
		n, err := f.r.Read(f.buf[len(f.buf):cap(f.buf)])
		f.buf = f.buf[:len(f.buf)+n]
		if n > 0 {
			return nil
		}
		if err != nil {
			if err == io.EOF && (f.p < len(f.buf) || f.tagEnd > 0) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

// header reads the stream header and checks its namespaces.
func (f *framer) header() error {
	const maxHeader = 4096
	for {
		err := f.scanHeader()
		if err != errNeedMore {
			return err
		}
		if err = f.fill(maxHeader); err == errTooBig {
			return stream.PolicyViolation
		} else if err != nil {
			return err
		}
	}
}

func (f *framer) scanHeader() error {
	b, p := f.buf, f.p
	for p < len(b) && isSpace(b[p]) {
		p++
	}
	if bytes.HasPrefix(b[p:], []byte("<?")) {
		i := bytes.Index(b[p:], []byte("?>"))
		if i < 0 {
			return errNeedMore
		}
		p += i + 2
		for p < len(b) && isSpace(b[p]) {
			p++
		}
	}
	if p == len(b) {
		return errNeedMore
	}
	if b[p] != '<' {
		return stream.BadFormat
	}
	end, _, name, err := parseTag(b, p)
	if err != nil {
		return err
	}
	colon := bytes.IndexByte(name, ':')
	if colon < 0 || string(name[colon+1:]) != "stream" {
		return stream.InvalidNamespace
	}
	prefix := name[:colon]
	var defaultNS, streamNS string
	forAttrs(b[p:end], func(q []byte, vs, ve int) {
		switch {
		case string(q) == "xmlns":
			defaultNS = attrValue(b[p+vs : p+ve])
		case len(q) == 6+len(prefix) && bytes.HasPrefix(q, []byte("xmlns:")) && bytes.Equal(q[6:], prefix):
			streamNS = attrValue(b[p+vs : p+ve])
		}
	})
	if defaultNS != stanza.NSClient || streamNS != stream.NS {
		return stream.InvalidNamespace
	}
	f.streamEnd = append([]byte("</"), name...)
	f.streamError = append(append([]byte(nil), prefix...), ":error"...)
	f.p, f.start = end, end
	return nil
}

// next returns the next top-level element and the length of its start tag,
// errStreamEnd at the end of the stream, or an error. raw is valid until the
// next call.
func (f *framer) next(limit int) (raw []byte, tagLen int, err error) {
	for {
		raw, tagLen, err = f.scan()
		if err == nil && limit > 0 && len(raw) > limit {
			err = errTooBig
		}
		if err != errNeedMore {
			return raw, tagLen, err
		}
		if err = f.fill(limit); err != nil {
			return nil, 0, err
		}
	}
}

func (f *framer) scan() ([]byte, int, error) {
	b := f.buf
	if f.tagEnd == 0 {
		// Between elements: only whitespace may come before the next one.
		p := f.p
		for p < len(b) && isSpace(b[p]) {
			p++
		}
		f.p, f.start = p, p
		switch {
		case p == len(b):
			return nil, 0, errNeedMore
		case b[p] != '<':
			return nil, 0, stream.BadFormat
		case p+1 == len(b):
			return nil, 0, errNeedMore
		}
		switch b[p+1] {
		case '/':
			gt := bytes.IndexByte(b[p:], '>')
			if gt < 0 {
				return nil, 0, errNeedMore
			}
			if !bytes.Equal(bytes.TrimRight(b[p:p+gt], " \t\r\n"), f.streamEnd) {
				return nil, 0, errNotWellFormed
			}
			f.p = p + gt + 1
			f.start = f.p
			return nil, 0, errStreamEnd
		case '?', '!':
			return nil, 0, errRestrictedXML
		}
		end, self, name, err := parseTag(b, p)
		if err != nil {
			return nil, 0, err
		}
		f.tagEnd, f.p = end-p, end
		if self {
			return f.complete()
		}
		f.names = append(f.names[:0], nameAt{off: 1, n: len(name)})
		f.depth = 1
	}
	for f.depth > 0 {
		i := bytes.IndexByte(b[f.p:], '<')
		if i < 0 {
			f.p = len(b)
			return nil, 0, errNeedMore
		}
		p := f.p + i
		f.p = p
		if p+1 == len(b) {
			return nil, 0, errNeedMore
		}
		switch b[p+1] {
		case '/':
			gt := bytes.IndexByte(b[p:], '>')
			if gt < 0 {
				return nil, 0, errNeedMore
			}
			top := f.names[len(f.names)-1]
			open := b[f.start+top.off : f.start+top.off+top.n]
			if !bytes.Equal(bytes.TrimRight(b[p+2:p+gt], " \t\r\n"), open) {
				return nil, 0, errNotWellFormed
			}
			f.names = f.names[:len(f.names)-1]
			f.depth--
			f.p = p + gt + 1
		case '!':
			const cdata = "<![CDATA["
			if len(b)-p < len(cdata) {
				if bytes.HasPrefix([]byte(cdata), b[p:]) {
					return nil, 0, errNeedMore
				}
				return nil, 0, errRestrictedXML
			}
			if !bytes.HasPrefix(b[p:], []byte(cdata)) {
				return nil, 0, errRestrictedXML
			}
			j := bytes.Index(b[p+len(cdata):], []byte("]]>"))
			if j < 0 {
				return nil, 0, errNeedMore
			}
			f.p = p + len(cdata) + j + 3
		case '?':
			return nil, 0, errRestrictedXML
		default:
			end, self, name, err := parseTag(b, p)
			if err != nil {
				return nil, 0, err
			}
			if !self {
				f.names = append(f.names, nameAt{off: p + 1 - f.start, n: len(name)})
				f.depth++
			}
			f.p = end
		}
	}
	return f.complete()
}

// complete returns the element that ends at f.p.
func (f *framer) complete() ([]byte, int, error) {
	raw, tagLen := f.buf[f.start:f.p], f.tagEnd
	f.start, f.tagEnd, f.depth = f.p, 0, 0
	return raw, tagLen, nil
}

// unread returns what was read from the connection but not scanned.
func (f *framer) unread() []byte { return f.buf[f.p:] }

// parseTag parses the start tag at b[p] (a '<'), and returns the index just
// past it, whether it is an empty-element tag, and the element's name.
func parseTag(b []byte, p int) (end int, empty bool, name []byte, err error) {
	i := p + 1
	for i < len(b) && !isSpace(b[i]) && b[i] != '/' && b[i] != '>' {
		i++
	}
	if i == len(b) {
		return 0, false, nil, errNeedMore
	}
	name = b[p+1 : i]
	if len(name) == 0 || bytes.IndexByte([]byte("-.0123456789<='\"&"), name[0]) >= 0 {
		return 0, false, nil, errNotWellFormed
	}
	for {
		// Like encoding/xml, accept attributes not separated by whitespace.
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i == len(b) {
			return 0, false, nil, errNeedMore
		}
		switch b[i] {
		case '>':
			return i + 1, false, name, nil
		case '/':
			if i+1 == len(b) {
				return 0, false, nil, errNeedMore
			}
			if b[i+1] != '>' {
				return 0, false, nil, errNotWellFormed
			}
			return i + 2, true, name, nil
		}
		ns := i
		for i < len(b) && b[i] != '=' && !isSpace(b[i]) && b[i] != '>' && b[i] != '/' && b[i] != '<' {
			i++
		}
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i == len(b) {
			return 0, false, nil, errNeedMore
		}
		if i == ns || b[i] != '=' {
			return 0, false, nil, errNotWellFormed
		}
		i++
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i == len(b) {
			return 0, false, nil, errNeedMore
		}
		q := b[i]
		if q != '\'' && q != '"' {
			return 0, false, nil, errNotWellFormed
		}
		j := bytes.IndexByte(b[i+1:], q)
		if j < 0 {
			return 0, false, nil, errNeedMore
		}
		if bytes.IndexByte(b[i+1:i+1+j], '<') >= 0 {
			return 0, false, nil, errNotWellFormed
		}
		i += j + 2
	}
}

// forAttrs calls f with the name of every attribute of the start tag tag,
// which parseTag accepted, and the range [vs, ve) of its quoted value. It
// returns the end of the element name.
func forAttrs(tag []byte, f func(name []byte, vs, ve int)) (nameEnd int) {
	i := 1
	for i < len(tag) && !isSpace(tag[i]) && tag[i] != '/' && tag[i] != '>' {
		i++
	}
	nameEnd = i
	for {
		for i < len(tag) && isSpace(tag[i]) {
			i++
		}
		if i >= len(tag) || tag[i] == '/' || tag[i] == '>' {
			return nameEnd
		}
		ns := i
		for tag[i] != '=' && !isSpace(tag[i]) {
			i++
		}
		name := tag[ns:i]
		for tag[i] != '\'' && tag[i] != '"' {
			i++
		}
		vs := i
		i += bytes.IndexByte(tag[i+1:], tag[i]) + 2
		f(name, vs, i)
	}
}

// attrValue returns the value of the quoted attribute value q, with its
// references replaced.
func attrValue(q []byte) string {
	v := q[1 : len(q)-1]
	if bytes.IndexByte(v, '&') < 0 {
		return string(v)
	}
	d := xml.NewDecoder(bytes.NewReader(append(append([]byte("<a v="), q...), "/>"...)))
	if tok, err := d.Token(); err == nil {
		if start, ok := tok.(xml.StartElement); ok && len(start.Attr) == 1 {
			return start.Attr[0].Value
		}
	}
	return string(v)
}
