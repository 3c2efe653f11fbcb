package stanza

import (
	"encoding/base64"
	"encoding/xml"
	"io"
	"strconv"

	"mellium.im/xmlstream"
)

var b64 = base64.StdEncoding.Strict()

// Data carries up to one block of payload in one direction of a tunnel.
type Data struct {
	SID string
	// Seq counts the data elements of one direction from 0, wrapping from
	// 65535 to 0.
	Seq uint16
	// Payload is 1 to block-size bytes.
	Payload []byte
}

// StartElement returns the start element of d, attributes included.
func (d Data) StartElement() xml.StartElement {
	return xml.StartElement{Name: name("data"), Attr: []xml.Attr{
		attr("sid", d.SID), attr("seq", strconv.Itoa(int(d.Seq))),
	}}
}

// TokenReader implements xmlstream.Marshaler. The Base64 text is encoded into
// a new buffer; use TokenReaderBuf to reuse one.
func (d Data) TokenReader() xml.TokenReader { return d.TokenReaderBuf(nil) }

// TokenReaderBuf is like TokenReader but encodes the Base64 text into buf
// (grown if it is too small). buf must not be modified until the returned
// reader has been consumed.
func (d Data) TokenReaderBuf(buf []byte) xml.TokenReader {
	n := b64.EncodedLen(len(d.Payload))
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	b64.Encode(buf, d.Payload)
	return &dataReader{start: d.StartElement(), text: buf}
}

// dataReader yields start, the Base64 text and the end element, allocating
// nothing beyond itself.
type dataReader struct {
	start xml.StartElement
	text  []byte
	i     int
}

func (r *dataReader) Token() (xml.Token, error) {
	r.i++
	switch r.i {
	case 1:
		return r.start, nil
	case 2:
		if len(r.text) > 0 {
			return xml.CharData(r.text), nil
		}
		r.i++
		fallthrough
	case 3:
		return r.start.End(), nil
	}
	return nil, io.EOF
}

// WriteXML implements xmlstream.WriterTo.
func (d Data) WriteXML(w xmlstream.TokenWriter) (int, error) { return writeXML(w, d.TokenReader()) }

// MarshalXML implements xml.Marshaler.
func (d Data) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return marshalXML(e, d.TokenReader())
}

// DataHeader decodes the attributes of a data element: its sid and seq.
func DataHeader(start *xml.StartElement) (sid string, seq uint16, err error) {
	if err := checkName(start, "data"); err != nil {
		return "", 0, err
	}
	names := []string{"sid", "seq"}
	var vals [2]string
	var found [2]bool
	if err := scanAttrs("data", start, names, vals[:], found[:]); err != nil {
		return "", 0, err
	}
	if !found[0] {
		return "", 0, attrErr("data", "sid", "", ErrMissingAttr)
	}
	if !found[1] {
		return "", 0, attrErr("data", "seq", "", ErrMissingAttr)
	}
	if err := checkSID("data", vals[0]); err != nil {
		return "", 0, err
	}
	n, err := parseDecimal("data", "seq", vals[1], 65535)
	if err != nil {
		return "", 0, err
	}
	return vals[0], uint16(n), nil
}

// DecodeData decodes a data element. start is its start element; r yields its
// content up to and including its end element. The payload is decoded
// straight out of each character data token and appended to buf[:0], which is
// grown only if its capacity is below max+2; max is the block-size the
// receiver announced. A payload that is empty, longer than max or not
// standard padded Base64 (XML whitespace aside) is an error; so is any child
// element.
func DecodeData(start *xml.StartElement, r xml.TokenReader, max int, buf []byte) (Data, error) {
	sid, seq, err := DataHeader(start)
	if err != nil {
		return Data{}, err
	}
	payload, err := DecodePayload(r, max, buf)
	if err != nil {
		return Data{}, err
	}
	return Data{SID: sid, Seq: seq, Payload: payload}, nil
}

// DecodePayload decodes the Base64 content of a data element whose start
// element has been read: see DecodeData.
func DecodePayload(r xml.TokenReader, max int, buf []byte) ([]byte, error) {
	d := b64Decoder{max: max}
	if cap(buf) >= max+2 {
		d.out = buf[:0]
	} else {
		d.out = make([]byte, 0, max+2)
	}
	for {
		tok, err := r.Token()
		if err != nil && err != io.EOF {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if err := d.write(t); err != nil {
				return nil, err
			}
		case xml.EndElement:
			return d.finish()
		case nil:
		default:
			return nil, contentErr("data", ErrContent)
		}
		if err == io.EOF {
			return d.finish()
		}
	}
}

// b64Decoder decodes Base64 text that arrives in pieces, skipping XML
// whitespace, straight into out.
type b64Decoder struct {
	out   []byte
	max   int
	carry [4]byte
	nc    int
	done  bool // a padded quantum was seen: nothing may follow
	strip []byte
}

func (d *b64Decoder) write(p []byte) error {
	if hasWS(p) {
		d.strip = d.strip[:0]
		for _, c := range p {
			if !isWS(c) {
				d.strip = append(d.strip, c)
			}
		}
		p = d.strip
	}
	if len(p) == 0 {
		return nil
	}
	if d.done {
		return contentErr("data", ErrBadBase64)
	}
	if d.nc > 0 {
		k := copy(d.carry[d.nc:], p)
		d.nc += k
		p = p[k:]
		if d.nc < 4 {
			return nil
		}
		if err := d.quanta(d.carry[:]); err != nil {
			return err
		}
		d.nc = 0
		if len(p) > 0 && d.done {
			return contentErr("data", ErrBadBase64)
		}
	}
	whole := len(p) &^ 3
	if whole > 0 {
		if err := d.quanta(p[:whole]); err != nil {
			return err
		}
		if whole < len(p) && d.done {
			return contentErr("data", ErrBadBase64)
		}
	}
	d.nc = copy(d.carry[:], p[whole:])
	return nil
}

// quanta decodes a multiple of four Base64 characters.
func (d *b64Decoder) quanta(q []byte) error {
	if len(d.out)+len(q)/4*3 > d.max+2 {
		return contentErr("data", ErrOversize)
	}
	n, err := b64.Decode(d.out[len(d.out):len(d.out)+len(q)/4*3], q)
	if err != nil {
		return contentErr("data", ErrBadBase64)
	}
	if q[len(q)-1] == '=' {
		d.done = true
	}
	d.out = d.out[:len(d.out)+n]
	return nil
}

func (d *b64Decoder) finish() ([]byte, error) {
	if d.nc != 0 {
		return nil, contentErr("data", ErrBadBase64)
	}
	if len(d.out) == 0 {
		return nil, contentErr("data", ErrEmpty)
	}
	if len(d.out) > d.max {
		return nil, contentErr("data", ErrOversize)
	}
	return d.out, nil
}

func hasWS(p []byte) bool {
	for _, c := range p {
		if c <= ' ' && isWS(c) {
			return true
		}
	}
	return false
}
