package stanza

import (
	"encoding/xml"
	"io"

	"mellium.im/xmlstream"
)

// Element is any of Start, Proceed, Data, Credit, Close, Closed and
// Reattach.
type Element interface {
	xmlstream.Marshaler
	xmlstream.WriterTo
	StartElement() xml.StartElement
}

var (
	_ Element = Start{}
	_ Element = Proceed{}
	_ Element = Data{}
	_ Element = Credit{}
	_ Element = Close{}
	_ Element = Closed{}
	_ Element = Reattach{}
)

// Decode reads the first element from r (skipping leading whitespace) and
// decodes it strictly into one of the XTLS element types. A data payload
// may be up to MaxBlockSize bytes.
func Decode(r xml.TokenReader) (Element, error) {
	var start xml.StartElement
	for {
		tok, err := r.Token()
		if err != nil && (err != io.EOF || tok == nil) {
			return nil, err
		}
		if s, ok := tok.(xml.StartElement); ok {
			start = s
			break
		}
		if c, ok := tok.(xml.CharData); ok && isSpace(c) {
			continue
		}
		if _, ok := tok.(xml.ProcInst); ok {
			continue
		}
		return nil, contentErr("", ErrContent)
	}
	return DecodeElement(&start, r)
}

// DecodeElement decodes the element that begins with start; r yields its
// content up to and including its end element.
func DecodeElement(start *xml.StartElement, r xml.TokenReader) (Element, error) {
	if start.Name.Space != NS {
		return nil, contentErr(start.Name.Local, ErrNotXTLS)
	}
	switch start.Name.Local {
	case "start":
		return check(DecodeStart(start, r))
	case "proceed":
		return check(DecodeProceed(start, r))
	case "data":
		return check(DecodeData(start, r, MaxBlockSize, nil))
	case "credit":
		return check(DecodeCredit(start, r))
	case "close":
		return check(DecodeClose(start, r))
	case "closed":
		return check(DecodeClosed(start, r))
	case "reattach":
		return check(DecodeReattach(start, r))
	}
	return nil, contentErr(start.Name.Local, ErrNotXTLS)
}

// check turns a failed decode into a nil Element.
func check[E Element](e E, err error) (Element, error) {
	if err != nil {
		return nil, err
	}
	return e, nil
}
