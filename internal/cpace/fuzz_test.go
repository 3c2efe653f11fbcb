package cpace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzRespond feeds arbitrary inputs, above all arbitrary initiator messages,
// to the responder. It must never panic; it must either reject the message
// with ErrInvalidPoint or ErrIdentity or return a well-formed reply and key
// that depend only on its inputs and the random source.
func FuzzRespond(f *testing.F) {
	v := func(s string) []byte { return unhex(f, s) }
	f.Add(uint64(1), v(vec.PRS), v(vec.CI), v(vec.sid), v(vec.ADb), v(vec.Ya), v(vec.ADa))
	f.Add(uint64(2), v(vec.PRS), v(vec.CI), v(vec.sid), v(vec.ADb), v(vec.invalidY1), v(vec.ADa))
	f.Add(uint64(3), v(vec.PRS), v(vec.CI), v(vec.sid), v(vec.ADb), v(vec.invalidY2Identity), v(vec.ADa))
	f.Add(uint64(4), []byte{}, []byte{}, []byte{}, []byte{}, v(vec.validX), []byte{})
	f.Add(uint64(5), bytes.Repeat([]byte("p"), 300), []byte("ci"), []byte("sid"), []byte("b"), bytes.Repeat([]byte{0xff}, 32), []byte("a"))
	f.Add(uint64(6), []byte("x"), []byte(nil), []byte(nil), []byte(nil), v(vec.Yb)[:31], []byte(nil))
	f.Add(uint64(7), []byte("x"), []byte(nil), []byte(nil), []byte(nil), append(v(vec.Yb), 0), []byte(nil))

	f.Fuzz(func(t *testing.T, seed uint64, prs, ci, sid, adB, msgA, adA []byte) {
		seeded := func() *rand.ChaCha8 {
			var s [32]byte
			binary.LittleEndian.PutUint64(s[:], seed)
			return rand.NewChaCha8(s)
		}
		msgB, isk, err := Respond(seeded(), prs, ci, sid, adB, msgA, adA)
		if err != nil {
			require.True(t, errors.Is(err, ErrInvalidPoint) || errors.Is(err, ErrIdentity),
				"unexpected error %v", err)
			require.Nil(t, msgB)
			require.Nil(t, isk)
			return
		}
		require.Len(t, msgB, MessageSize)
		require.Len(t, isk, ISKSize)
		_, err = decodeElement(msgB)
		require.NoError(t, err)

		msgB2, isk2, err := Respond(seeded(), prs, ci, sid, adB, msgA, adA)
		require.NoError(t, err)
		require.Equal(t, msgB, msgB2)
		require.Equal(t, isk, isk2)
	})
}
