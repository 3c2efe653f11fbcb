package cpace

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/gtank/ristretto255"
	"github.com/stretchr/testify/require"
)

var (
	testPRS = []byte("123-456")
	testCI  = lvCat([]byte("alice@example.org/phone"), []byte("alice@example.org/laptop"))
	testSID = bytes.Repeat([]byte{0x5a}, 32)
	testADa = []byte("xtls-pair initiator")
	testADb = []byte("xtls-pair responder")
)

// exchange runs a full initiator-responder exchange with fresh randomness.
func exchange(t *testing.T, prsA, prsB []byte) (iskA, iskB []byte) {
	t.Helper()
	st, msgA, err := Start(nil, prsA, testCI, testSID, testADa)
	require.NoError(t, err)
	require.Len(t, msgA, MessageSize)
	msgB, iskB, err := Respond(nil, prsB, testCI, testSID, testADb, msgA, testADa)
	require.NoError(t, err)
	require.Len(t, msgB, MessageSize)
	require.Len(t, iskB, ISKSize)
	iskA, err = st.Finish(msgB, testADb)
	require.NoError(t, err)
	require.Len(t, iskA, ISKSize)
	return iskA, iskB
}

func TestRoundTrip(t *testing.T) {
	iskA, iskB := exchange(t, testPRS, testPRS)
	require.Equal(t, iskA, iskB)

	// Fresh scalars give a fresh key.
	iskA2, iskB2 := exchange(t, testPRS, testPRS)
	require.Equal(t, iskA2, iskB2)
	require.NotEqual(t, iskA, iskA2)
}

func TestSymmetricRoundTrip(t *testing.T) {
	a, msgA, err := StartSymmetric(nil, testPRS, testCI, testSID, testADa)
	require.NoError(t, err)
	b, msgB, err := StartSymmetric(nil, testPRS, testCI, testSID, testADb)
	require.NoError(t, err)
	iskA, err := a.Finish(msgB, testADb)
	require.NoError(t, err)
	iskB, err := b.Finish(msgA, testADa)
	require.NoError(t, err)
	require.Equal(t, iskA, iskB)
}

func TestWrongPasswordDiffers(t *testing.T) {
	iskA, iskB := exchange(t, testPRS, []byte("123-457"))
	require.NotEqual(t, iskA, iskB)
	iskA, iskB = exchange(t, testPRS, nil)
	require.NotEqual(t, iskA, iskB)
}

// TestInputsBind checks that every input of either party is bound into ISK.
func TestInputsBind(t *testing.T) {
	other := []byte("other")
	for _, c := range []struct {
		name                  string
		ciB, sidB, adaB, adbA []byte
		same                  bool
	}{
		{name: "same", ciB: testCI, sidB: testSID, adaB: testADa, adbA: testADb, same: true},
		{name: "CI", ciB: other, sidB: testSID, adaB: testADa, adbA: testADb},
		{name: "sid", ciB: testCI, sidB: other, adaB: testADa, adbA: testADb},
		{name: "ADa", ciB: testCI, sidB: testSID, adaB: other, adbA: testADb},
		{name: "ADb", ciB: testCI, sidB: testSID, adaB: testADa, adbA: other},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, msgA, err := Start(nil, testPRS, testCI, testSID, testADa)
			require.NoError(t, err)
			msgB, iskB, err := Respond(nil, testPRS, c.ciB, c.sidB, testADb, msgA, c.adaB)
			require.NoError(t, err)
			iskA, err := st.Finish(msgB, c.adbA)
			require.NoError(t, err)
			if c.same {
				require.Equal(t, iskA, iskB)
			} else {
				require.NotEqual(t, iskA, iskB)
			}
		})
	}
}

// TestTampered flips every bit of each message in turn: the receiver must
// either reject the message or end up with a different key.
func TestTampered(t *testing.T) {
	st, msgA, err := Start(nil, testPRS, testCI, testSID, testADa)
	require.NoError(t, err)
	msgB, iskB, err := Respond(nil, testPRS, testCI, testSID, testADb, msgA, testADa)
	require.NoError(t, err)
	iskA, err := st.Finish(msgB, testADb)
	require.NoError(t, err)
	require.Equal(t, iskA, iskB)

	rejected := 0
	for i := range 8 * MessageSize {
		bad := bytes.Clone(msgA)
		bad[i/8] ^= 1 << (i % 8)
		_, isk, err := Respond(nil, testPRS, testCI, testSID, testADb, bad, testADa)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidPoint)
			rejected++
		} else {
			require.NotEqual(t, iskA, isk)
		}

		bad = bytes.Clone(msgB)
		bad[i/8] ^= 1 << (i % 8)
		st, msgA2, err := Start(nil, testPRS, testCI, testSID, testADa)
		require.NoError(t, err)
		_, iskB2, err := Respond(nil, testPRS, testCI, testSID, testADb, msgA2, testADa)
		require.NoError(t, err)
		isk, err = st.Finish(bad, testADb)
		if err != nil {
			require.ErrorIs(t, err, ErrInvalidPoint)
			rejected++
		} else {
			require.NotEqual(t, iskB2, isk)
		}
	}
	// Most single-bit changes give a non-canonical encoding.
	require.Positive(t, rejected)
}

func TestIdentityRejected(t *testing.T) {
	id := ristretto255.NewIdentityElement().Bytes()
	require.Equal(t, make([]byte, MessageSize), id)

	_, _, err := Respond(nil, testPRS, testCI, testSID, testADb, id, testADa)
	require.ErrorIs(t, err, ErrIdentity)

	st, _, err := Start(nil, testPRS, testCI, testSID, testADa)
	require.NoError(t, err)
	_, err = st.Finish(id, testADb)
	require.ErrorIs(t, err, ErrIdentity)
}

func TestInvalidEncodings(t *testing.T) {
	_, valid, err := Start(nil, testPRS, testCI, testSID, testADa)
	require.NoError(t, err)

	fe := func(b ...byte) []byte { // 32 bytes, little endian, b first
		out := make([]byte, 32)
		copy(out, b)
		return out
	}
	// p = 2^255 - 19, the encoding of the field element 0 plus p.
	p := fe(0xed)
	for i := 1; i < 31; i++ {
		p[i] = 0xff
	}
	p[31] = 0x7f
	highBit := bytes.Clone(valid)
	highBit[31] |= 0x80
	odd := bytes.Clone(valid)
	odd[0] ^= 1

	for name, msg := range map[string][]byte{
		"nil":           nil,
		"empty":         {},
		"short":         valid[:31],
		"long":          append(bytes.Clone(valid), 0),
		"double":        append(bytes.Clone(valid), valid...),
		"p":             p,
		"all ff":        bytes.Repeat([]byte{0xff}, 32),
		"high bit":      highBit,
		"negative":      odd,
		"one":           fe(1),
		"identity long": make([]byte, 33),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := Respond(nil, testPRS, testCI, testSID, testADb, msg, testADa)
			require.ErrorIs(t, err, ErrInvalidPoint)

			st, _, err := Start(nil, testPRS, testCI, testSID, testADa)
			require.NoError(t, err)
			isk, err := st.Finish(msg, testADb)
			require.ErrorIs(t, err, ErrInvalidPoint)
			require.Nil(t, isk)
		})
	}
}

func TestFinishOnce(t *testing.T) {
	st, msgA, err := Start(nil, testPRS, testCI, testSID, testADa)
	require.NoError(t, err)
	msgB, _, err := Respond(nil, testPRS, testCI, testSID, testADb, msgA, testADa)
	require.NoError(t, err)
	_, err = st.Finish(msgB, testADb)
	require.NoError(t, err)
	require.Nil(t, st.y)
	_, err = st.Finish(msgB, testADb)
	require.ErrorIs(t, err, ErrFinished)

	// A failed Finish consumes the state too: the exchange must abort.
	st, _, err = Start(nil, testPRS, testCI, testSID, testADa)
	require.NoError(t, err)
	_, err = st.Finish(make([]byte, MessageSize), testADb)
	require.ErrorIs(t, err, ErrIdentity)
	_, err = st.Finish(msgB, testADb)
	require.ErrorIs(t, err, ErrFinished)

	var nilState *State
	_, err = nilState.Finish(msgB, testADb)
	require.ErrorIs(t, err, ErrFinished)
}

// TestInputsCopied checks that the State does not alias caller memory.
func TestInputsCopied(t *testing.T) {
	sid, ad := bytes.Clone(testSID), bytes.Clone(testADa)
	st, msgA, err := Start(nil, testPRS, testCI, sid, ad)
	require.NoError(t, err)
	sentA := bytes.Clone(msgA)
	clear(sid)
	clear(ad)
	clear(msgA)
	msgB, iskB, err := Respond(nil, testPRS, testCI, testSID, testADb, sentA, testADa)
	require.NoError(t, err)
	iskA, err := st.Finish(msgB, testADb)
	require.NoError(t, err)
	require.Equal(t, iskB, iskA)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestRandomnessFailure(t *testing.T) {
	_, _, err := Start(errReader{}, testPRS, testCI, testSID, testADa)
	require.ErrorContains(t, err, "no entropy")
	_, _, err = Start(bytes.NewReader(make([]byte, 31)), testPRS, testCI, testSID, testADa)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)

	_, msgA, err := Start(nil, testPRS, testCI, testSID, testADa)
	require.NoError(t, err)
	_, _, err = Respond(errReader{}, testPRS, testCI, testSID, testADb, msgA, testADa)
	require.ErrorContains(t, err, "no entropy")
}

func TestSampleScalar(t *testing.T) {
	// The bits above bit 251 are cleared.
	y, err := sampleScalar(bytes.NewReader(bytes.Repeat([]byte{0xff}, 32)))
	require.NoError(t, err)
	want := bytes.Repeat([]byte{0xff}, 32)
	want[31] = 0x0f
	require.Equal(t, want, y.Bytes())

	// Zero is rejected and sampling repeated.
	in := append(make([]byte, 32), unhex(t, vec.ya)...)
	y, err = sampleScalar(bytes.NewReader(in))
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.ya), y.Bytes())

	// Zero with only high bits set is zero after masking.
	in = append(append(make([]byte, 31), 0xf0), unhex(t, vec.ya)...)
	st, msgA, err := Start(bytes.NewReader(in), unhex(t, vec.PRS), unhex(t, vec.CI), unhex(t, vec.sid), nil)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.Ya), msgA)
	require.Equal(t, Initiator, st.Role())
}

func TestRoleString(t *testing.T) {
	require.Equal(t, "initiator", Initiator.String())
	require.Equal(t, "responder", Responder.String())
	require.Equal(t, "symmetric", Symmetric.String())
	require.Equal(t, "cpace.Role(0)", Role(0).String())
}

func TestGeneratorPadding(t *testing.T) {
	// For short PRS, DSI, PRS and padding fill exactly one SHA-512 block.
	for _, n := range []int{0, 1, 8, 100, 108} {
		prs := make([]byte, n)
		gs := generatorString([]byte(dsi), prs, nil, nil, sInBytes)
		require.Equal(t, sInBytes+2, len(gs), "len(PRS)=%d", n) // + lv_cat(CI) + lv_cat(sid) for empty CI, sid
	}
	// Long PRS: no padding, but still an (empty) length-prefixed field.
	prs := make([]byte, 200)
	gs := generatorString([]byte(dsi), prs, nil, nil, sInBytes)
	require.Equal(t, lenPrefixed([]byte(dsi))+lenPrefixed(prs)+1+2, len(gs))
}
