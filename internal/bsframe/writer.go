package bsframe

import (
	"bufio"
	"io"
)

// Writer encodes frames onto one direction of a bytestream, buffered: frames
// reach the underlying writer when its buffer of MaxFrame bytes is full and
// at Flush. The sender decides when to Flush (at least whenever it has
// nothing more to send right away: a request left in the buffer is never
// answered).
//
// Errors of the underlying writer are sticky, as with bufio.Writer. A
// Writer is not safe for concurrent use.
type Writer struct {
	bw  *bufio.Writer
	hdr [maxHeaderLen]byte
}

// NewWriter returns a Writer that writes frames to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, MaxFrame)}
}

// WriteFrame encodes f into the buffer. A frame that breaks a rule of the
// wire format is not written: WriteFrame returns a *MalformedError, as
// AppendFrame does, and the stream is unchanged.
func (w *Writer) WriteFrame(f Frame) error {
	hdr, err := appendHeader(w.hdr[:0], f)
	if err != nil {
		return err
	}
	if _, err := w.bw.Write(hdr); err != nil {
		return err
	}
	if f.Type == Data {
		_, err = w.bw.Write(f.Payload)
	}
	return err
}

// Flush writes the buffered frames to the underlying writer.
func (w *Writer) Flush() error {
	return w.bw.Flush()
}

// Buffered returns the number of bytes written with WriteFrame and not yet
// flushed.
func (w *Writer) Buffered() int {
	return w.bw.Buffered()
}
