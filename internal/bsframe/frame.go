// Package bsframe is the binary framing of a tunnel's elements on a SOCKS5
// bytestream (XEP-0065), and the authenticator that opens each direction of
// such a bytestream. The wire format is docs/bytestream-frames.md.
//
// A bytestream carries the same requests as the IQ path, with the same
// meaning: [Data] is the `data` element, [Credit] the `credit` element. Each
// request has a 32-bit id chosen by its sender and is answered, like an IQ,
// by one [Result] or [Error] frame that names that id. [Bye] says that its
// sender will send nothing more on the bytestream.
//
// The package does no I/O of its own: [Reader] decodes frames from an
// io.Reader, [Writer] and [AppendFrame] encode them, and [Authenticate] runs
// the authenticator exchange over an io.ReadWriter. Decoding is strict (a
// frame has exactly one encoding) and bounded: a Reader holds one buffer of
// [MaxFrame] bytes and allocates nothing per frame.
//
//	ia, ra, err := bsframe.Authenticators(state.ExportKeyingMaterial, sid, nonce)
//	err = bsframe.Authenticate(conn, bsframe.Initiator, ia, ra)
//	r, w := bsframe.NewReader(conn), bsframe.NewWriter(conn)
//	err = w.WriteFrame(bsframe.Frame{Type: bsframe.Data, ID: 7, Seq: 0, Payload: block})
//	err = w.Flush()
//	f, err := r.Next() // a Result for id 7, with luck
package bsframe // import "github.com/xmppxtls/xtls/internal/bsframe"

import (
	"encoding/binary"
	"math"
	"strconv"

	"mellium.im/xmpp/stanza"
)

// Type is the first byte of a frame.
type Type uint8

// The frame types.
const (
	// Data carries a block: the `data` element (id, seq, payload).
	Data Type = 0x01
	// Credit raises the send limit: the `credit` element (id, limit).
	Credit Type = 0x02
	// Result is the empty IQ result: it acknowledges the request named by id.
	Result Type = 0x03
	// Error is an IQ error to the request named by id (type, condition).
	Error Type = 0x04
	// Bye says that its sender will send no more requests (Data, Credit)
	// on this bytestream: only answers (Result, Error) and Nop follow.
	Bye Type = 0x05
	// Nop carries nothing and is ignored. A sender writes one when it has
	// been idle for a moment after writing: some proxies (Prosody 0.12's
	// proxy65) hold the tail of a burst until more bytes come.
	Nop Type = 0x06
)

var typeNames = [...]string{Data: "DATA", Credit: "CREDIT", Result: "RESULT", Error: "ERROR", Bye: "BYE", Nop: "NOP"}

// String returns the frame type's name ("DATA", "CREDIT", ...) or its value
// in hexadecimal if it is unknown.
func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "0x" + strconv.FormatUint(uint64(t), 16)
}

// Sizes of the wire format.
const (
	// MaxPayload is the largest payload of a Data frame. The smallest is 1.
	MaxPayload = math.MaxUint16
	// MaxLimit is the largest limit of a Credit frame: 2^63-1.
	MaxLimit = math.MaxInt64
	// MaxFrame is the size of the largest frame: a Data frame's 9-byte
	// header and MaxPayload bytes.
	MaxFrame = dataHeader + MaxPayload
)

// Header sizes, type byte included.
const (
	dataHeader   = 1 + 4 + 2 + 2 // type, id, seq, len
	creditSize   = 1 + 4 + 8     // type, id, limit
	resultSize   = 1 + 4         // type, id
	errorSize    = 1 + 4 + 1 + 1 // type, id, error type, condition
	byeSize      = 1             // type
	maxHeaderLen = creditSize
)

// Frame is one frame. Which fields count depends on Type:
//
//	Data:   ID, Seq, Payload (1 to MaxPayload bytes)
//	Credit: ID, Limit (at most MaxLimit)
//	Result: ID
//	Error:  ID, ErrType, Cond (from the tables of ErrorTypeCode and ConditionCode)
//	Bye:    nothing
//
// The encoders ignore the fields a type does not use; the Reader leaves them
// zero.
type Frame struct {
	Type    Type
	ID      uint32           // the request's id, chosen by its sender; an answer's names it
	Seq     uint16           // Data: the block's seq, as in the data element
	Payload []byte           // Data: the block; from a Reader, valid until its next call
	Limit   uint64           // Credit: the absolute limit, as in the credit element
	ErrType stanza.ErrorType // Error: the IQ error's type
	Cond    stanza.Condition // Error: the IQ error's condition
}

// StanzaError returns the type and condition of an Error frame as the
// stanza.Error an IQ error with them would be, so that
// errors.Is(f.StanzaError(), stanza.Error{Type: stanza.Wait}) works.
func (f Frame) StanzaError() stanza.Error {
	return stanza.Error{Type: f.ErrType, Condition: f.Cond}
}

// AppendFrame appends the encoding of f to dst and returns the extended
// slice. A frame that breaks a rule of the wire format (an unknown type, an
// empty or oversized payload, a limit above MaxLimit, an error type or
// condition without a code) is not encoded: AppendFrame returns dst
// unchanged and a *MalformedError naming the field.
func AppendFrame(dst []byte, f Frame) ([]byte, error) {
	out, err := appendHeader(dst, f)
	if err != nil {
		return dst, err
	}
	if f.Type == Data {
		out = append(out, f.Payload...)
	}
	return out, nil
}

// appendHeader appends everything of f but a Data frame's payload, after
// checking every field of f that the type uses.
func appendHeader(dst []byte, f Frame) ([]byte, error) {
	switch f.Type {
	case Data:
		if len(f.Payload) == 0 || len(f.Payload) > MaxPayload {
			return dst, &MalformedError{Type: f.Type, Field: FieldLen, Value: uint64(len(f.Payload))}
		}
		dst = append(dst, byte(f.Type))
		dst = binary.BigEndian.AppendUint32(dst, f.ID)
		dst = binary.BigEndian.AppendUint16(dst, f.Seq)
		return binary.BigEndian.AppendUint16(dst, uint16(len(f.Payload))), nil
	case Credit:
		if f.Limit > MaxLimit {
			return dst, &MalformedError{Type: f.Type, Field: FieldLimit, Value: f.Limit}
		}
		dst = append(dst, byte(f.Type))
		dst = binary.BigEndian.AppendUint32(dst, f.ID)
		return binary.BigEndian.AppendUint64(dst, f.Limit), nil
	case Result:
		dst = append(dst, byte(f.Type))
		return binary.BigEndian.AppendUint32(dst, f.ID), nil
	case Error:
		t, ok := ErrorTypeCode(f.ErrType)
		if !ok {
			return dst, &MalformedError{Type: f.Type, Field: FieldErrorType}
		}
		c, ok := ConditionCode(f.Cond)
		if !ok {
			return dst, &MalformedError{Type: f.Type, Field: FieldCondition}
		}
		dst = append(dst, byte(f.Type))
		dst = binary.BigEndian.AppendUint32(dst, f.ID)
		return append(dst, t, c), nil
	case Bye, Nop:
		return append(dst, byte(f.Type)), nil
	}
	return dst, &MalformedError{Type: f.Type, Field: FieldType, Value: uint64(f.Type)}
}
