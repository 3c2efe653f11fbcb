package stanza

import (
	"errors"
	"strconv"
)

// Sentinel errors wrapped by *DecodeError. Use errors.Is to tell them apart.
var (
	// ErrMissingAttr is returned when a required attribute is absent.
	ErrMissingAttr = errors.New("missing attribute")
	// ErrDuplicateAttr is returned when an attribute appears twice.
	ErrDuplicateAttr = errors.New("duplicate attribute")
	// ErrSyntax is returned when an attribute value is not of the required
	// form (a number with a sign, spaces or other characters; a sid with a
	// character outside [A-Za-z0-9_-]; an unknown error condition).
	ErrSyntax = errors.New("bad syntax")
	// ErrOutOfRange is returned when a number is well formed but outside the
	// limits of the protocol.
	ErrOutOfRange = errors.New("out of range")
	// ErrUnknownMethod is returned for a start whose method is not x509. It
	// maps to feature-not-implemented rather than bad-request.
	ErrUnknownMethod = errors.New("unknown method")
	// ErrBadBase64 is returned when a data payload is not standard, padded
	// Base64 (XML whitespace aside).
	ErrBadBase64 = errors.New("bad base64")
	// ErrEmpty is returned for a data element without payload.
	ErrEmpty = errors.New("empty payload")
	// ErrOversize is returned when a decoded payload exceeds the block-size.
	ErrOversize = errors.New("payload larger than block-size")
	// ErrContent is returned when an element has content it must not have:
	// child elements, or text in an element that must be empty.
	ErrContent = errors.New("unexpected content")
	// ErrNotXTLS is returned by Decode for an element outside the XTLS
	// namespace or with an unknown local name.
	ErrNotXTLS = errors.New("not an XTLS element")
)

// DecodeError reports why an element was rejected.
type DecodeError struct {
	// Element is the local name of the element ("start", "data", ...).
	Element string
	// Attr is the attribute at fault, or "" when the content is.
	Attr string
	// Value is the offending attribute value, cut to 64 bytes.
	Value string
	// Err is one of the sentinel errors of this package.
	Err error
}

// Error implements error.
func (e *DecodeError) Error() string {
	s := "xtls/stanza: <" + e.Element + ">"
	if e.Attr != "" {
		s += " attribute " + e.Attr
		if e.Value != "" {
			s += "=" + strconv.Quote(e.Value)
		}
	}
	return s + ": " + e.Err.Error()
}

// Unwrap returns the sentinel error.
func (e *DecodeError) Unwrap() error { return e.Err }

func attrErr(elem, attr, value string, err error) error {
	if len(value) > 64 {
		value = value[:64]
	}
	return &DecodeError{Element: elem, Attr: attr, Value: value, Err: err}
}

func contentErr(elem string, err error) error {
	return &DecodeError{Element: elem, Err: err}
}
