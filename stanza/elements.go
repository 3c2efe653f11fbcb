package stanza

import (
	"encoding/xml"
	"io"
	"strconv"

	"mellium.im/xmlstream"
)

// Start opens a tunnel. The initiator sends it in an IQ-set; it carries the
// initiator's own receive limits.
type Start struct {
	// SID names the tunnel: 1 to MaxSIDLen characters from [A-Za-z0-9_-].
	SID string
	// BlockSize is the largest decoded payload the initiator accepts in one
	// data element (MinBlockSize to MaxBlockSize).
	BlockSize int
	// Window is the number of payload bytes the initiator will buffer unread,
	// the initial credit it grants (BlockSize to MaxWindow).
	Window int
	// Method is the tunnel method; empty means MethodX509.
	Method string
}

// Proceed accepts a tunnel. The responder sends it in the IQ-result to start;
// it carries the responder's own receive limits.
type Proceed struct {
	SID       string
	BlockSize int
	Window    int
}

// Credit raises the flow-control limit: the peer may have sent Limit payload
// bytes in total since the tunnel began. Limits are absolute, so a credit
// element can be sent again without granting anything twice.
type Credit struct {
	SID   string
	Limit uint64
}

// Close ends the sender's direction of a tunnel ("I will send no more
// data"). With a non-empty Error (a stanza error condition) it aborts both
// directions at once.
type Close struct {
	SID   string
	Error string
	// Reason says, with an abort (Error set), why in terms a user
	// understands: a token of 1 to 32 characters from [a-z0-9-], one of
	// the Reason constants or another one (contract 3, optional; a
	// receiver that does not know the attribute ignores it).
	Reason string
}

// Closed acknowledges a Close; it travels in the IQ-result.
type Closed struct {
	SID string
}

func name(local string) xml.Name { return xml.Name{Space: NS, Local: local} }

func attr(local, value string) xml.Attr {
	return xml.Attr{Name: xml.Name{Local: local}, Value: value}
}

func itoa(n int) string { return strconv.Itoa(n) }

func empty(start xml.StartElement) xml.TokenReader { return xmlstream.Wrap(nil, start) }

func writeXML(w xmlstream.TokenWriter, r xml.TokenReader) (int, error) {
	return xmlstream.Copy(w, r)
}

func marshalXML(e *xml.Encoder, r xml.TokenReader) error {
	if _, err := xmlstream.Copy(e, r); err != nil {
		return err
	}
	return e.Flush()
}

// StartElement returns the start element of s, attributes included.
func (s Start) StartElement() xml.StartElement {
	a := []xml.Attr{attr("sid", s.SID), attr("block-size", itoa(s.BlockSize)), attr("window", itoa(s.Window))}
	m := s.Method
	if m == "" {
		m = MethodX509
	}
	a = append(a, attr("method", m))
	return xml.StartElement{Name: name("start"), Attr: a}
}

// TokenReader implements xmlstream.Marshaler.
func (s Start) TokenReader() xml.TokenReader { return empty(s.StartElement()) }

// WriteXML implements xmlstream.WriterTo.
func (s Start) WriteXML(w xmlstream.TokenWriter) (int, error) { return writeXML(w, s.TokenReader()) }

// MarshalXML implements xml.Marshaler.
func (s Start) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return marshalXML(e, s.TokenReader())
}

// StartElement returns the start element of p, attributes included.
func (p Proceed) StartElement() xml.StartElement {
	return xml.StartElement{Name: name("proceed"), Attr: []xml.Attr{
		attr("sid", p.SID), attr("block-size", itoa(p.BlockSize)), attr("window", itoa(p.Window)),
	}}
}

// TokenReader implements xmlstream.Marshaler.
func (p Proceed) TokenReader() xml.TokenReader { return empty(p.StartElement()) }

// WriteXML implements xmlstream.WriterTo.
func (p Proceed) WriteXML(w xmlstream.TokenWriter) (int, error) { return writeXML(w, p.TokenReader()) }

// MarshalXML implements xml.Marshaler.
func (p Proceed) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return marshalXML(e, p.TokenReader())
}

// StartElement returns the start element of c, attributes included.
func (c Credit) StartElement() xml.StartElement {
	return xml.StartElement{Name: name("credit"), Attr: []xml.Attr{
		attr("sid", c.SID), attr("limit", strconv.FormatUint(c.Limit, 10)),
	}}
}

// TokenReader implements xmlstream.Marshaler.
func (c Credit) TokenReader() xml.TokenReader { return empty(c.StartElement()) }

// WriteXML implements xmlstream.WriterTo.
func (c Credit) WriteXML(w xmlstream.TokenWriter) (int, error) { return writeXML(w, c.TokenReader()) }

// MarshalXML implements xml.Marshaler.
func (c Credit) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return marshalXML(e, c.TokenReader())
}

// StartElement returns the start element of c, attributes included.
func (c Close) StartElement() xml.StartElement {
	a := []xml.Attr{attr("sid", c.SID)}
	if c.Error != "" {
		a = append(a, attr("error", c.Error))
		if c.Reason != "" {
			a = append(a, attr("reason", c.Reason))
		}
	}
	return xml.StartElement{Name: name("close"), Attr: a}
}

// TokenReader implements xmlstream.Marshaler.
func (c Close) TokenReader() xml.TokenReader { return empty(c.StartElement()) }

// WriteXML implements xmlstream.WriterTo.
func (c Close) WriteXML(w xmlstream.TokenWriter) (int, error) { return writeXML(w, c.TokenReader()) }

// MarshalXML implements xml.Marshaler.
func (c Close) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return marshalXML(e, c.TokenReader())
}

// StartElement returns the start element of c, attributes included.
func (c Closed) StartElement() xml.StartElement {
	return xml.StartElement{Name: name("closed"), Attr: []xml.Attr{attr("sid", c.SID)}}
}

// TokenReader implements xmlstream.Marshaler.
func (c Closed) TokenReader() xml.TokenReader { return empty(c.StartElement()) }

// WriteXML implements xmlstream.WriterTo.
func (c Closed) WriteXML(w xmlstream.TokenWriter) (int, error) { return writeXML(w, c.TokenReader()) }

// MarshalXML implements xml.Marshaler.
func (c Closed) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return marshalXML(e, c.TokenReader())
}

// limits decodes the sid, block-size and window shared by start and proceed.
func limits(elem string, start *xml.StartElement, extra string) (sid string, bs, win int, ex string, hasEx bool, err error) {
	names := []string{"sid", "block-size", "window", extra}
	var vals [4]string
	var found [4]bool
	if err = scanAttrs(elem, start, names, vals[:], found[:]); err != nil {
		return
	}
	for i := 0; i < 3; i++ {
		if !found[i] {
			err = attrErr(elem, names[i], "", ErrMissingAttr)
			return
		}
	}
	if err = checkSID(elem, vals[0]); err != nil {
		return
	}
	b, err := parseDecimal(elem, "block-size", vals[1], MaxBlockSize)
	if err != nil {
		return
	}
	if err = inRange(elem, "block-size", b, MinBlockSize, MaxBlockSize); err != nil {
		return
	}
	w, err := parseDecimal(elem, "window", vals[2], MaxWindow)
	if err != nil {
		return
	}
	if err = inRange(elem, "window", w, b, MaxWindow); err != nil {
		return
	}
	return vals[0], int(b), int(w), vals[3], found[3], nil
}

// DecodeStart decodes a start element. start is its start element; r yields
// its content (nil if the caller has consumed it), which must be empty.
func DecodeStart(start *xml.StartElement, r xml.TokenReader) (Start, error) {
	if err := checkName(start, "start"); err != nil {
		return Start{}, err
	}
	sid, bs, win, method, hasMethod, err := limits("start", start, "method")
	if err != nil {
		return Start{}, err
	}
	if hasMethod && method != MethodX509 {
		return Start{}, attrErr("start", "method", method, ErrUnknownMethod)
	}
	if err := skipEmpty("start", r); err != nil {
		return Start{}, err
	}
	return Start{SID: sid, BlockSize: bs, Window: win, Method: MethodX509}, nil
}

// DecodeProceed decodes a proceed element (see DecodeStart for r).
func DecodeProceed(start *xml.StartElement, r xml.TokenReader) (Proceed, error) {
	if err := checkName(start, "proceed"); err != nil {
		return Proceed{}, err
	}
	sid, bs, win, _, _, err := limits("proceed", start, "")
	if err != nil {
		return Proceed{}, err
	}
	if err := skipEmpty("proceed", r); err != nil {
		return Proceed{}, err
	}
	return Proceed{SID: sid, BlockSize: bs, Window: win}, nil
}

// DecodeCredit decodes a credit element (see DecodeStart for r).
func DecodeCredit(start *xml.StartElement, r xml.TokenReader) (Credit, error) {
	if err := checkName(start, "credit"); err != nil {
		return Credit{}, err
	}
	names := []string{"sid", "limit"}
	var vals [2]string
	var found [2]bool
	if err := scanAttrs("credit", start, names, vals[:], found[:]); err != nil {
		return Credit{}, err
	}
	if !found[0] {
		return Credit{}, attrErr("credit", "sid", "", ErrMissingAttr)
	}
	if !found[1] {
		return Credit{}, attrErr("credit", "limit", "", ErrMissingAttr)
	}
	if err := checkSID("credit", vals[0]); err != nil {
		return Credit{}, err
	}
	limit, err := parseDecimal("credit", "limit", vals[1], 1<<63-1)
	if err != nil {
		return Credit{}, err
	}
	if err := skipEmpty("credit", r); err != nil {
		return Credit{}, err
	}
	return Credit{SID: vals[0], Limit: limit}, nil
}

// DecodeClose decodes a close element (see DecodeStart for r).
func DecodeClose(start *xml.StartElement, r xml.TokenReader) (Close, error) {
	if err := checkName(start, "close"); err != nil {
		return Close{}, err
	}
	names := []string{"sid", "error", "reason"}
	var vals [3]string
	var found [3]bool
	if err := scanAttrs("close", start, names, vals[:], found[:]); err != nil {
		return Close{}, err
	}
	if !found[0] {
		return Close{}, attrErr("close", "sid", "", ErrMissingAttr)
	}
	if err := checkSID("close", vals[0]); err != nil {
		return Close{}, err
	}
	if found[1] && !ValidCondition(vals[1]) {
		return Close{}, attrErr("close", "error", vals[1], ErrSyntax)
	}
	if found[2] && !ValidReason(vals[2]) {
		return Close{}, attrErr("close", "reason", vals[2], ErrSyntax)
	}
	if err := skipEmpty("close", r); err != nil {
		return Close{}, err
	}
	c := Close{SID: vals[0], Error: vals[1]}
	if c.Error != "" {
		c.Reason = vals[2] // without an abort, a reason means nothing
	}
	return c, nil
}

// DecodeClosed decodes a closed element (see DecodeStart for r).
func DecodeClosed(start *xml.StartElement, r xml.TokenReader) (Closed, error) {
	if err := checkName(start, "closed"); err != nil {
		return Closed{}, err
	}
	var vals [1]string
	var found [1]bool
	if err := scanAttrs("closed", start, []string{"sid"}, vals[:], found[:]); err != nil {
		return Closed{}, err
	}
	if !found[0] {
		return Closed{}, attrErr("closed", "sid", "", ErrMissingAttr)
	}
	if err := checkSID("closed", vals[0]); err != nil {
		return Closed{}, err
	}
	if err := skipEmpty("closed", r); err != nil {
		return Closed{}, err
	}
	return Closed{SID: vals[0]}, nil
}

func checkName(start *xml.StartElement, local string) error {
	if start.Name.Space != NS || start.Name.Local != local {
		return contentErr(local, ErrNotXTLS)
	}
	return nil
}

// skipEmpty consumes the content of an element that must be empty up to and
// including its end element; XML whitespace is allowed. r may be nil.
func skipEmpty(elem string, r xml.TokenReader) error {
	if r == nil {
		return nil
	}
	for {
		tok, err := r.Token()
		if err == io.EOF {
			if tok == nil {
				return nil
			}
			err = nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.CharData:
			if !isSpace(t) {
				return contentErr(elem, ErrContent)
			}
		case nil:
		default:
			return contentErr(elem, ErrContent)
		}
	}
}

func isSpace(b []byte) bool {
	for _, c := range b {
		if !isWS(c) {
			return false
		}
	}
	return true
}

// isWS reports whether c is XML whitespace (space, tab, CR, LF).
func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
