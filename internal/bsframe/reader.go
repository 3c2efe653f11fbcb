package bsframe

import (
	"bufio"
	"encoding/binary"
	"io"
)

// Reader decodes frames from one direction of a bytestream.
//
// It holds one buffer of MaxFrame bytes, allocated by NewReader, and
// allocates nothing per frame: a Data frame's Payload points into that
// buffer and is valid only until the next call to Next. Copy it to keep it.
//
// A Reader stops at the first error: a malformed frame (a *MalformedError,
// errors.Is(err, ErrMalformed)), io.EOF at a frame boundary, or an error of
// the underlying reader; every later call to Next returns that error again
// without reading. After a Bye frame only Result, Error and Nop frames may
// follow, then the end of the stream.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	pending int  // bytes of the frame last returned, still in br
	bye     bool // a Bye frame has been returned
	err     error
}

// NewReader returns a Reader that reads frames from r. It reads ahead of the
// frame it returns, so r must carry nothing but frames from here on: read
// the authenticator (see Authenticate) from r before calling NewReader.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, MaxFrame)}
}

// Next returns the next frame. It returns io.EOF if the stream ends where a
// frame would begin, and a *MalformedError (with Short set, matching
// io.ErrUnexpectedEOF too) if it ends inside a frame.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	f, err := r.next()
	if err != nil {
		r.err = err
	}
	return f, err
}

func (r *Reader) next() (Frame, error) {
	if r.pending > 0 {
		// The bytes are buffered: Discard cannot fail.
		_, _ = r.br.Discard(r.pending)
		r.pending = 0
	}
	b, err := r.br.Peek(1)
	if len(b) == 0 {
		return Frame{}, err
	}
	f := Frame{Type: Type(b[0])}
	if r.bye && f.Type != Result && f.Type != Error && f.Type != Nop {
		// After BYE only answers: to requests that crossed it.
		return Frame{}, &MalformedError{Type: f.Type, Field: FieldAfterBye}
	}
	var size int
	switch f.Type {
	case Data:
		size = dataHeader
	case Credit:
		size = creditSize
	case Result:
		size = resultSize
	case Error:
		size = errorSize
	case Bye, Nop:
		size = byeSize
	default:
		return Frame{}, &MalformedError{Type: f.Type, Field: FieldType, Value: uint64(f.Type)}
	}
	if b, err = r.peek(f.Type, size); err != nil {
		return Frame{}, err
	}
	if f.Type != Bye && f.Type != Nop {
		f.ID = binary.BigEndian.Uint32(b[1:])
	}
	switch f.Type {
	case Data:
		f.Seq = binary.BigEndian.Uint16(b[5:])
		n := int(binary.BigEndian.Uint16(b[7:]))
		if n == 0 {
			return Frame{}, &MalformedError{Type: f.Type, Field: FieldLen}
		}
		size += n
		if b, err = r.peek(f.Type, size); err != nil {
			return Frame{}, err
		}
		// Capped, so that an append by the caller cannot write into the
		// frames behind this one.
		f.Payload = b[dataHeader:size:size]
	case Credit:
		f.Limit = binary.BigEndian.Uint64(b[5:])
		if f.Limit > MaxLimit {
			return Frame{}, &MalformedError{Type: f.Type, Field: FieldLimit, Value: f.Limit}
		}
	case Error:
		var ok bool
		if f.ErrType, ok = ErrorTypeOf(b[5]); !ok {
			return Frame{}, &MalformedError{Type: f.Type, Field: FieldErrorType, Value: uint64(b[5])}
		}
		if f.Cond, ok = ConditionOf(b[6]); !ok {
			return Frame{}, &MalformedError{Type: f.Type, Field: FieldCondition, Value: uint64(b[6])}
		}
	case Bye:
		r.bye = true
	}
	r.pending = size
	return f, nil
}

// peek returns the next n bytes (n <= MaxFrame) without consuming them. A
// stream that ends before n bytes is a short frame of type t.
func (r *Reader) peek(t Type, n int) ([]byte, error) {
	b, err := r.br.Peek(n)
	switch {
	case len(b) == n:
		return b, nil
	case err == io.EOF:
		return nil, &MalformedError{Type: t, Field: fieldAt(t, len(b)), Short: true}
	}
	return nil, err
}

// fieldAt names the field of a frame of type t that begins at or contains
// byte offset off.
func fieldAt(t Type, off int) Field {
	switch {
	case off < 5:
		return FieldID
	case t == Credit:
		return FieldLimit
	case t == Error && off < 6:
		return FieldErrorType
	case t == Error:
		return FieldCondition
	case off < 7:
		return FieldSeq
	case off < dataHeader:
		return FieldLen
	}
	return FieldPayload
}
