// Package stanza is the wire vocabulary of XTLS (namespace urn:xmpp:xtls:0):
// the elements start, proceed, data, credit, close and closed that travel
// inside IQ stanzas between two full JIDs, and reattach, with which a tunnel
// continues from a new session (contract 5); their encoding and their strict
// decoding.
//
// The package does no I/O. Every element has the trio of methods that
// mellium's wire types have: TokenReader (xmlstream.Marshaler), WriteXML
// (xmlstream.WriterTo) and MarshalXML (xml.Marshaler), so it can be wrapped in
// an IQ with mellium's stanza.IQ.Wrap. Decoding is strict: every attribute is
// checked against the limits of the protocol (see docs/protocol.md) and a
// violation is reported as a *DecodeError that wraps one of the sentinel
// errors of this package, so callers can map it to the right stanza error
// with errors.Is.
//
// A data element is encoded without an intermediate copy of its payload: the
// Base64 text is written once into a buffer the caller may reuse
// (Data.TokenReaderBuf), and decoded straight out of the XML character data
// tokens into the caller's buffer (DecodeData), token by token, so that the
// short lifetime of an xml.Decoder's token bytes is never a problem.
package stanza // import "github.com/xmppxtls/xtls/stanza"

// NS is the XML namespace of every XTLS element.
const NS = "urn:xmpp:xtls:0"

// Limits of the protocol.
const (
	// MinBlockSize and MaxBlockSize bound the block-size attribute: the
	// largest decoded payload an entity accepts in one data element.
	MinBlockSize = 4096
	MaxBlockSize = 65535

	// MaxWindow bounds the window attribute: the payload bytes an entity will
	// buffer unread. A window is also at least the block-size announced with
	// it.
	MaxWindow = 16 << 20

	// MaxSIDLen is the longest sid; a sid has 1 to MaxSIDLen characters from
	// [A-Za-z0-9_-].
	MaxSIDLen = 64

	// FirstFlightMax is the largest payload of the optimistic first data
	// element (seq 0) an initiator may send before proceed arrives: every
	// block-size and window is at least this large.
	FirstFlightMax = 4096

	// SeqSpan is how far ahead of the oldest unacknowledged seq a sender may
	// go: it never sends a seq at or beyond oldest+SeqSpan (modulo 65536).
	SeqSpan = 256

	// MethodX509 is the only tunnel method today: TLS with X.509
	// certificates.
	MethodX509 = "x509"
)
