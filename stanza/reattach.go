package stanza

import (
	"encoding/base64"
	"encoding/xml"
	"strconv"

	"mellium.im/xmlstream"
	"mellium.im/xmpp/jid"
)

// ProofSize is the size of a re-attach proof: an HMAC-SHA256.
const ProofSize = 32

// Reattach continues a tunnel from another full JID of the same account
// (contract 5, docs/protocol.md §8.2): the sender's XMPP session ended and it
// goes on from the session the IQ comes from. It travels in an IQ-set; the
// empty IQ-result accepts it.
type Reattach struct {
	SID string
	// Old is the full JID the receiver knows the sender by: the one the
	// tunnel was bound to until now.
	Old string
	// Counter numbers the sender's re-attachments of this tunnel, from 1;
	// a receiver accepts only a counter above the last it accepted.
	Counter uint64
	// Proof is the HMAC-SHA256 that only the tunnel's two TLS endpoints
	// can compute (ProofSize bytes).
	Proof []byte
}

// StartElement returns the start element of r, attributes included.
func (r Reattach) StartElement() xml.StartElement {
	return xml.StartElement{Name: name("reattach"), Attr: []xml.Attr{
		attr("sid", r.SID), attr("old", r.Old),
		attr("counter", strconv.FormatUint(r.Counter, 10)),
		attr("proof", base64.StdEncoding.EncodeToString(r.Proof)),
	}}
}

// TokenReader implements xmlstream.Marshaler.
func (r Reattach) TokenReader() xml.TokenReader { return empty(r.StartElement()) }

// WriteXML implements xmlstream.WriterTo.
func (r Reattach) WriteXML(w xmlstream.TokenWriter) (int, error) {
	return writeXML(w, r.TokenReader())
}

// MarshalXML implements xml.Marshaler.
func (r Reattach) MarshalXML(e *xml.Encoder, _ xml.StartElement) error {
	return marshalXML(e, r.TokenReader())
}

// DecodeReattach decodes a reattach element (see DecodeStart for r): every
// attribute is required; old must be a full JID, counter a decimal from 1,
// proof the Base64 (with padding) of ProofSize bytes.
func DecodeReattach(start *xml.StartElement, r xml.TokenReader) (Reattach, error) {
	const elem = "reattach"
	if err := checkName(start, elem); err != nil {
		return Reattach{}, err
	}
	names := []string{"sid", "old", "counter", "proof"}
	var vals [4]string
	var found [4]bool
	if err := scanAttrs(elem, start, names, vals[:], found[:]); err != nil {
		return Reattach{}, err
	}
	for i, ok := range found {
		if !ok {
			return Reattach{}, attrErr(elem, names[i], "", ErrMissingAttr)
		}
	}
	if err := checkSID(elem, vals[0]); err != nil {
		return Reattach{}, err
	}
	old, err := jid.Parse(vals[1])
	if err != nil || old.Resourcepart() == "" || old.String() != vals[1] {
		return Reattach{}, attrErr(elem, "old", vals[1], ErrSyntax)
	}
	counter, err := parseDecimal(elem, "counter", vals[2], 1<<63-1)
	if err != nil {
		return Reattach{}, err
	}
	if counter == 0 {
		return Reattach{}, attrErr(elem, "counter", vals[2], ErrOutOfRange)
	}
	proof, err := base64.StdEncoding.Strict().DecodeString(vals[3])
	if err != nil || len(proof) != ProofSize {
		return Reattach{}, attrErr(elem, "proof", vals[3], ErrSyntax)
	}
	if err := skipEmpty(elem, r); err != nil {
		return Reattach{}, err
	}
	return Reattach{SID: vals[0], Old: vals[1], Counter: counter, Proof: proof}, nil
}
