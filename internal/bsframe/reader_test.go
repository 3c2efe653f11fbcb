package bsframe_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/internal/bsframe"
)

// allValid is the concatenation of the valid vectors (Bye last).
func allValid(t testing.TB) ([]byte, []bsframe.Frame) {
	var (
		stream []byte
		frames []bsframe.Frame
	)
	for _, v := range validVectors {
		stream = append(stream, unhex(t, v.hex)...)
		frames = append(frames, normal(v.frame))
	}
	return stream, frames
}

// Frames back to back, however the stream is cut into reads, then the end
// of the stream, again and again.
func TestReaderStream(t *testing.T) {
	stream, want := allValid(t)
	for name, src := range map[string]io.Reader{
		"whole":    bytes.NewReader(stream),
		"one byte": iotest.OneByteReader(bytes.NewReader(stream)),
		"half":     iotest.HalfReader(bytes.NewReader(stream)),
		"data EOF": iotest.DataErrReader(bytes.NewReader(stream)),
	} {
		t.Run(name, func(t *testing.T) {
			r := bsframe.NewReader(src)
			for i := range want {
				f, err := r.Next()
				require.NoError(t, err, i)
				require.Equal(t, want[i], normal(f), i)
			}
			for range 2 {
				_, err := r.Next()
				require.ErrorIs(t, err, io.EOF)
				require.NotErrorIs(t, err, bsframe.ErrMalformed)
			}
		})
	}
}

// A Payload stays valid until the next call to Next, and appending to it
// cannot overwrite the frame behind it.
func TestReaderPayload(t *testing.T) {
	a := bsframe.Frame{Type: bsframe.Data, ID: 1, Seq: 1, Payload: []byte("first")}
	b := bsframe.Frame{Type: bsframe.Data, ID: 2, Seq: 2, Payload: []byte("second")}
	stream, err := bsframe.AppendFrame(nil, a)
	require.NoError(t, err)
	stream, err = bsframe.AppendFrame(stream, b)
	require.NoError(t, err)

	r := bsframe.NewReader(bytes.NewReader(stream))
	f, err := r.Next()
	require.NoError(t, err)
	require.Equal(t, a, f)
	require.Equal(t, len(f.Payload), cap(f.Payload))
	_ = append(f.Payload, bytes.Repeat([]byte{0xee}, 32)...)
	f, err = r.Next()
	require.NoError(t, err)
	require.Equal(t, b, f)
}

// counting counts the calls to Read of the reader it wraps.
type counting struct {
	r     io.Reader
	reads int
}

func (c *counting) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// After a malformed frame the Reader returns the same error and reads no
// more, though valid frames follow.
func TestReaderStopsAtMalformed(t *testing.T) {
	stream, _ := allValid(t)
	stream = append(unhex(t, "03 00000001 07"), stream...)
	src := &counting{r: iotest.OneByteReader(bytes.NewReader(stream))}
	r := bsframe.NewReader(src)
	_, err := r.Next()
	require.NoError(t, err)
	_, err = r.Next()
	require.ErrorIs(t, err, bsframe.ErrMalformed)
	reads := src.reads
	for range 3 {
		f, again := r.Next()
		require.Same(t, err, again)
		require.Equal(t, bsframe.Frame{}, f)
	}
	require.Equal(t, reads, src.reads)
}

var errBroken = errors.New("connection broken")

// An error of the underlying reader comes back as it is, at a frame
// boundary or inside a frame, and stops the Reader.
func TestReaderIOError(t *testing.T) {
	for name, prefix := range map[string]string{
		"boundary":      "03 00000001",
		"inside header": "03 00000001 01 0000",
		"inside data":   "03 00000001 01 00000001 0000 0005 6868",
	} {
		t.Run(name, func(t *testing.T) {
			src := io.MultiReader(bytes.NewReader(unhex(t, prefix)), iotest.ErrReader(errBroken))
			r := bsframe.NewReader(src)
			_, err := r.Next()
			require.NoError(t, err)
			_, err = r.Next()
			require.ErrorIs(t, err, errBroken)
			require.NotErrorIs(t, err, bsframe.ErrMalformed)
			_, err = r.Next()
			require.ErrorIs(t, err, errBroken)
		})
	}
}

// cycle is an endless stream that repeats one sequence of frames.
type cycle struct {
	b   []byte
	off int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.b[c.off:])
		n += k
		c.off = (c.off + k) % len(c.b)
	}
	return n, nil
}

// Decoding allocates nothing per frame, large frames included.
func TestReaderDoesNotAllocate(t *testing.T) {
	stream, _ := allValid(t)
	stream = stream[:len(stream)-1] // without Bye, so that it can repeat
	stream, err := bsframe.AppendFrame(stream, bsframe.Frame{Type: bsframe.Data, ID: 5, Payload: make([]byte, bsframe.MaxPayload)})
	require.NoError(t, err)
	r := bsframe.NewReader(&cycle{b: stream})
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}

// The Writer buffers frames until Flush and writes what AppendFrame
// encodes.
func TestWriter(t *testing.T) {
	stream, frames := allValid(t)
	big := bsframe.Frame{Type: bsframe.Data, ID: 7, Seq: 9, Payload: bytes.Repeat([]byte{1, 2, 3}, 20000)}
	stream, err := bsframe.AppendFrame(stream, big)
	require.NoError(t, err)
	frames = append(frames, big)

	var out bytes.Buffer
	w := bsframe.NewWriter(&out)
	for _, f := range frames[:len(validVectors)] {
		require.NoError(t, w.WriteFrame(f))
	}
	require.Zero(t, out.Len(), "written before Flush")
	require.Equal(t, len(stream)-len(big.Payload)-9, w.Buffered())
	require.NoError(t, w.WriteFrame(big))
	require.NoError(t, w.Flush())
	require.Zero(t, w.Buffered())
	require.Equal(t, stream, out.Bytes())
}

// An error of the underlying writer is returned and sticks.
func TestWriterError(t *testing.T) {
	w := bsframe.NewWriter(failWriter{})
	require.NoError(t, w.WriteFrame(bsframe.Frame{Type: bsframe.Result, ID: 1}))
	require.ErrorIs(t, w.Flush(), errBroken)
	require.ErrorIs(t, w.WriteFrame(bsframe.Frame{Type: bsframe.Data, ID: 2, Payload: make([]byte, bsframe.MaxPayload)}), errBroken)
	require.ErrorIs(t, w.Flush(), errBroken)
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errBroken }
