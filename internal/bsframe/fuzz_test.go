package bsframe_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/internal/bsframe"
)

// decodeAll reads frames from in until the Reader stops, and returns them
// re-encoded one after the other, with the error that stopped it.
func decodeAll(t *testing.T, in []byte) ([]byte, error) {
	r := bsframe.NewReader(bytes.NewReader(in))
	var out []byte
	for {
		f, err := r.Next()
		if err != nil {
			return out, err
		}
		require.LessOrEqual(t, len(f.Payload), bsframe.MaxPayload)
		require.Equal(t, len(f.Payload), cap(f.Payload))
		if out, err = bsframe.AppendFrame(out, f); err != nil {
			t.Fatalf("a decoded frame does not encode: %+v: %v", f, err)
		}
	}
}

// FuzzReader feeds arbitrary streams to a Reader. It must never panic;
// every frame it returns must encode back to exactly the bytes it was read
// from (a frame has one encoding); it must stop with io.EOF only where the
// input ends on a frame boundary and otherwise with a *MalformedError; and
// decoding must allocate no more for any input than for an empty one, plus
// the error.
func FuzzReader(f *testing.F) {
	for _, v := range validVectors {
		f.Add(unhex(f, v.hex))
	}
	for _, v := range invalidVectors {
		f.Add(unhex(f, v.hex))
	}
	stream, _ := allValid(f)
	f.Add(stream)
	// Small seeds only: the engine minimizes an interesting input byte by
	// byte, which takes minutes for a 64 KiB one. TestAppendFrameEdges
	// covers the largest frame.
	f.Add(unhex(f, "01 00000001 0000 ffff"))
	f.Add(unhex(f, "01 00000001 0000 0100 00"))

	baseline := testing.AllocsPerRun(1, func() { drain(nil) })

	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := decodeAll(t, in)
		require.True(t, bytes.HasPrefix(in, out), "re-encoded frames differ from the input")
		if errors.Is(err, io.EOF) {
			require.Equal(t, len(in), len(out), "io.EOF before the end of the input")
		} else {
			var me *bsframe.MalformedError
			require.ErrorAs(t, err, &me)
			require.ErrorIs(t, err, bsframe.ErrMalformed)
			require.Less(t, len(out), len(in), "malformed with nothing left")
		}

		allocs := testing.AllocsPerRun(1, func() { drain(in) })
		require.LessOrEqual(t, allocs, baseline+1, "allocations")
	})
}

// drain reads frames from in until the Reader stops.
func drain(in []byte) {
	r := bsframe.NewReader(bytes.NewReader(in))
	for {
		if _, err := r.Next(); err != nil {
			return
		}
	}
}
