package bsframe

import (
	"errors"
	"io"
	"strconv"
)

// ErrMalformed is wrapped by every *MalformedError: errors.Is(err,
// ErrMalformed) tells a frame that breaks the wire format from an I/O error.
var ErrMalformed = errors.New("bsframe: malformed frame")

// Field names the part of a frame that is malformed.
type Field string

// The fields a *MalformedError can name.
const (
	FieldType      Field = "type"       // an unknown frame type
	FieldID        Field = "id"         // only for a stream that ended in it
	FieldSeq       Field = "seq"        // only for a stream that ended in it
	FieldLen       Field = "len"        // 0, or above MaxPayload when encoding
	FieldPayload   Field = "payload"    // only for a stream that ended in it
	FieldLimit     Field = "limit"      // above MaxLimit
	FieldErrorType Field = "error-type" // a code outside the table of ErrorTypeCode
	FieldCondition Field = "condition"  // a code outside the table of ConditionCode
	FieldAfterBye  Field = "after-bye"  // any frame after Bye in the same direction
)

// MalformedError is a frame that breaks the wire format: read by a
// [Reader], or given to [AppendFrame] or [Writer.WriteFrame]. A bytestream
// that delivers one is abandoned (docs/bytestream-frames.md).
type MalformedError struct {
	// Type is the frame's type byte, as read or given.
	Type Type
	// Field is the part of the frame at fault.
	Field Field
	// Value is the offending value of Field (the type byte, len, limit or
	// code); 0 if Short.
	Value uint64
	// Short says that the stream ended inside Field, before the frame was
	// complete. The error then also matches io.ErrUnexpectedEOF.
	Short bool
}

// Error says which frame and which field are at fault.
func (e *MalformedError) Error() string {
	s := "bsframe: malformed "
	if e.Field == FieldType {
		return s + "frame: unknown type 0x" + strconv.FormatUint(e.Value, 16)
	}
	s += e.Type.String() + " frame: "
	switch {
	case e.Field == FieldAfterBye:
		return s + "sent after BYE"
	case e.Short:
		return s + "stream ended in " + string(e.Field)
	case e.Field == FieldErrorType || e.Field == FieldCondition:
		return s + "unknown " + string(e.Field) + " code " + strconv.FormatUint(e.Value, 10)
	}
	return s + string(e.Field) + " " + strconv.FormatUint(e.Value, 10) + " out of range"
}

// Unwrap returns ErrMalformed, and io.ErrUnexpectedEOF too if e is Short.
func (e *MalformedError) Unwrap() []error {
	if e.Short {
		return []error{ErrMalformed, io.ErrUnexpectedEOF}
	}
	return []error{ErrMalformed}
}
