package cpace

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/gtank/ristretto255"
	"github.com/stretchr/testify/require"
)

// Test vectors copied from draft-irtf-cfrg-cpace-21 (23 April 2026):
// appendix A.1.2 and A.1.4 (prepend_len, lv_cat), A.3.3, A.3.5 and A.3.7
// (o_cat, transcript_ir, transcript_oc), and appendix B.3 "Test vector for
// CPace using group ristretto255 and hash SHA-512": B.3.1 (calculate_generator),
// B.3.2 and B.3.3 (messages), B.3.4 (K), B.3.5 (ISK initiator/responder),
// B.3.6 (ISK parallel execution), B.3.10 (scalar_mult valid inputs) and
// B.3.11 (invalid inputs for scalar_mult_vfy). They are also in the draft's
// source repository github.com/cfrg/draft-irtf-cfrg-cpace, tag
// draft-irtf-cfrg-cpace-21. Whitespace in the hex strings is ignored.
var vec = struct {
	PRS, CI, sid                 string
	zpadLen                      int
	genString, genHash, g        string
	ADa, ya, Ya                  string
	ADb, yb, Yb                  string
	K                            string
	dsiISK                       string
	transcriptIR, ISKIR          string
	transcriptOC, ISKSY          string
	validS, validX, validSX      string
	invalidY1, invalidY2Identity string
}{
	PRS:     "50617373776f7264", // b'Password'
	zpadLen: 100,
	// CI = b'\x0bA_initiator\x0bB_responder'
	CI:  "0b415f696e69746961746f720b425f726573706f6e646572",
	sid: "7e4b4791d6a8ef019b936c79fb7f2c57",
	genString: `
		11435061636552697374726574746f3235350850617373776f726464
		00000000000000000000000000000000000000000000000000000000
		00000000000000000000000000000000000000000000000000000000
		00000000000000000000000000000000000000000000000000000000
		00000000000000000000000000000000180b415f696e69746961746f
		720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f
		2c57`,
	genHash: `
		da6d3ddc8802fca9058755ffd3ebde08a9c2c74945901a258482a288
		b6663af06bf645c93cd1c51512307199c80e84908916d983b34af772
		05f90851a657ee27`,
	g: `
		222b6b195fe84b1652badb6f6a3ae3d24341e7306967f0b8115b40d5
		698c7e56`,

	ADa: "414461", // b'ADa'
	ya: `
		da3d23700a9e5699258aef94dc060dfda5ebb61f02a5ea77fad53f4f
		f0976d08`,
	Ya: `
		d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0eec
		482b9157`,

	ADb: "414462", // b'ADb'
	yb: `
		d2316b454718c35362d83d69df6320f38578ed5984651435e2949762
		d900b80d`,
	Yb: `
		3ea7e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7
		433f7258`,

	K: `
		80b69a8a76457ab6a4d7f887a4bf6b55a2f80ac19c333f917a05fc98
		87c8b40f`,

	transcriptIR: `
		20d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0e
		ec482b915703414461203ea7e0b19560d7c0b0f5734f63b955286dfa
		8232b5ebe63324e2d9e7433f725803414462`,
	dsiISK: "435061636552697374726574746f3235355f49534b", // b'CPaceRistretto255_ISK'
	ISKIR: `
		b69effbf61b51d56401c0f65601abe428de8206feaaf0e32198896dc
		ae7b35cd2b38950a39dfd5d4a79164614c2984f7daa460b588c1e80c
		3fa2068af7900447`,

	transcriptOC: `
		6f6320d6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f
		8d0eec482b915703414461203ea7e0b19560d7c0b0f5734f63b95528
		6dfa8232b5ebe63324e2d9e7433f725803414462`,
	ISKSY: `
		544199d71f62f8d9a1fee55727e24fe4a45844593c2b6013c4fa3969
		d0e5debb2244675c0b43397cbb68d342b01fc0f98fc961469a25134d
		e9f0f813c1a57476`,

	validS: `
		7cd0e075fa7955ba52c02759a6c90dbbfc10e6d40aea8d283e407d88
		cf538a05`,
	validX: `
		2c3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d6
		54b4a51c`,
	validSX: `
		7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e
		7f6b600e`,
	invalidY1: `
		2b3c6b8c4f3800e7aef6864025b4ed79bd599117e427c41bd47d93d6
		54b4a51c`,
	invalidY2Identity: `
		00000000000000000000000000000000000000000000000000000000
		00000000`,
}

// unhex decodes a hex string, ignoring white space.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	require.NoError(t, err)
	return b
}

func scalar(t testing.TB, s string) *ristretto255.Scalar {
	t.Helper()
	y, err := ristretto255.NewScalar().SetCanonicalBytes(unhex(t, s))
	require.NoError(t, err)
	return y
}

// Appendix A.1.2.
func TestPrependLenVectors(t *testing.T) {
	r127 := make([]byte, 127)
	for i := range r127 {
		r127[i] = byte(i)
	}
	r128 := append(bytes.Clone(r127), 127)
	for _, c := range []struct {
		in   []byte
		want string
	}{
		{nil, "00"},
		{[]byte("1234"), "0431323334"},
		{r127, "7f" + hex.EncodeToString(r127)},
		{r128, "8001" + hex.EncodeToString(r128)},
	} {
		require.Equal(t, c.want, hex.EncodeToString(prependLen(nil, c.in)))
		require.Equal(t, len(c.want)/2, lenPrefixed(c.in))
	}
	// Multi-byte LEB128 beyond the draft's vectors: 300 = 0xac 0x02,
	// 16384 = 0x80 0x80 0x01.
	require.Equal(t, []byte{0xac, 0x02}, prependLen(nil, make([]byte, 300))[:2])
	require.Equal(t, []byte{0x80, 0x80, 0x01}, prependLen(nil, make([]byte, 16384))[:3])
	require.Equal(t, 16384+3, lenPrefixed(make([]byte, 16384)))
}

// Appendix A.1.4.
func TestLvCatVector(t *testing.T) {
	got := lvCat([]byte("1234"), []byte("5"), []byte(""), []byte("678"))
	require.Equal(t, "043132333401350003363738", hex.EncodeToString(got))
}

// Appendix A.3.3.
func TestOCatVectors(t *testing.T) {
	larger := func(a, b string) bool { return bytes.Compare([]byte(a), []byte(b)) > 0 }
	require.False(t, larger("\x00", "\x00\x00"))
	require.True(t, larger("\x01", "\x00\x00"))
	require.True(t, larger("\x00\x00", "\x00"))
	require.False(t, larger("\x00\x00", "\x01"))
	require.False(t, larger("\x00\x01", "\x01"))
	require.False(t, larger("ABCD", "BCD"))

	require.Equal(t, "6f6342434441424344", hex.EncodeToString(oCat([]byte("ABCD"), []byte("BCD"))))
	require.Equal(t, "6f634243444142434445", hex.EncodeToString(oCat([]byte("BCD"), []byte("ABCDE"))))
}

// Appendix A.3.5 and A.3.7.
func TestTranscriptVectors(t *testing.T) {
	pa, pb := []byte("PartyA"), []byte("PartyB")
	require.Equal(t, "03313233065061727479410332333406506172747942",
		hex.EncodeToString(transcriptIR([]byte("123"), pa, []byte("234"), pb)))
	require.Equal(t, "043334353606506172747941043233343506506172747942",
		hex.EncodeToString(transcriptIR([]byte("3456"), pa, []byte("2345"), pb)))
	require.Equal(t, "6f6303323334065061727479420331323306506172747941",
		hex.EncodeToString(transcriptOC([]byte("123"), pa, []byte("234"), pb)))
	require.Equal(t, "6f63043334353606506172747941043233343506506172747942",
		hex.EncodeToString(transcriptOC([]byte("3456"), pa, []byte("2345"), pb)))
}

// Appendix B.3.1.
func TestGeneratorVector(t *testing.T) {
	prs, ci, sid := unhex(t, vec.PRS), unhex(t, vec.CI), unhex(t, vec.sid)
	require.Equal(t, []byte("Password"), prs)
	require.Equal(t, vec.zpadLen, sInBytes-1-lenPrefixed(prs)-lenPrefixed([]byte(dsi)))

	gs := generatorString([]byte(dsi), prs, ci, sid, sInBytes)
	require.Len(t, gs, 170)
	require.Equal(t, unhex(t, vec.genString), gs)

	h := generatorHash(prs, ci, sid)
	require.Equal(t, unhex(t, vec.genHash), h[:])

	g := calculateGenerator(prs, ci, sid)
	require.Equal(t, unhex(t, vec.g), g.Bytes())
}

// Appendix B.3.2, B.3.3 and B.3.5: the full initiator-responder exchange with
// the draft's scalars fed in through the random source.
func TestExchangeVector(t *testing.T) {
	prs, ci, sid := unhex(t, vec.PRS), unhex(t, vec.CI), unhex(t, vec.sid)
	ada, adb := unhex(t, vec.ADa), unhex(t, vec.ADb)
	require.Equal(t, []byte("ADa"), ada)
	require.Equal(t, []byte("ADb"), adb)

	st, msgA, err := Start(bytes.NewReader(unhex(t, vec.ya)), prs, ci, sid, ada)
	require.NoError(t, err)
	require.Equal(t, Initiator, st.Role())
	require.Equal(t, unhex(t, vec.Ya), msgA)

	msgB, iskB, err := Respond(bytes.NewReader(unhex(t, vec.yb)), prs, ci, sid, adb, msgA, ada)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.Yb), msgB)
	require.Equal(t, unhex(t, vec.ISKIR), iskB)

	iskA, err := st.Finish(msgB, adb)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.ISKIR), iskA)
}

// Appendix B.3.4 and B.3.5, step by step.
func TestISKVectorSteps(t *testing.T) {
	ya, yb := scalar(t, vec.ya), scalar(t, vec.yb)
	Ya, Yb := unhex(t, vec.Ya), unhex(t, vec.Yb)

	k1, err := scalarMultVfy(ya, Yb)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.K), k1.Bytes())
	k2, err := scalarMultVfy(yb, Ya)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.K), k2.Bytes())

	require.Equal(t, unhex(t, vec.dsiISK), []byte(dsiISK))
	tr := transcriptIR(Ya, unhex(t, vec.ADa), Yb, unhex(t, vec.ADb))
	require.Equal(t, unhex(t, vec.transcriptIR), tr)
	require.Equal(t, unhex(t, vec.ISKIR), deriveISK(unhex(t, vec.sid), unhex(t, vec.K), tr))

	oc := transcriptOC(Ya, unhex(t, vec.ADa), Yb, unhex(t, vec.ADb))
	require.Equal(t, unhex(t, vec.transcriptOC), oc)
	require.Equal(t, unhex(t, vec.ISKSY), deriveISK(unhex(t, vec.sid), unhex(t, vec.K), oc))
}

// Appendix B.3.6: the symmetric ("parallel execution") setting.
func TestSymmetricVector(t *testing.T) {
	prs, ci, sid := unhex(t, vec.PRS), unhex(t, vec.CI), unhex(t, vec.sid)
	ada, adb := unhex(t, vec.ADa), unhex(t, vec.ADb)

	a, msgA, err := StartSymmetric(bytes.NewReader(unhex(t, vec.ya)), prs, ci, sid, ada)
	require.NoError(t, err)
	require.Equal(t, Symmetric, a.Role())
	require.Equal(t, unhex(t, vec.Ya), msgA)
	b, msgB, err := StartSymmetric(bytes.NewReader(unhex(t, vec.yb)), prs, ci, sid, adb)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.Yb), msgB)

	iskA, err := a.Finish(msgB, adb)
	require.NoError(t, err)
	iskB, err := b.Finish(msgA, ada)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.ISKSY), iskA)
	require.Equal(t, unhex(t, vec.ISKSY), iskB)
}

// Appendix B.3.10 and B.3.11.
func TestScalarMultVfyVectors(t *testing.T) {
	s := scalar(t, vec.validS)

	x := unhex(t, vec.validX)
	X, err := ristretto255.NewIdentityElement().SetCanonicalBytes(x)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.validSX), ristretto255.NewIdentityElement().ScalarMult(s, X).Bytes())
	k, err := scalarMultVfy(s, x)
	require.NoError(t, err)
	require.Equal(t, unhex(t, vec.validSX), k.Bytes())

	_, err = scalarMultVfy(s, unhex(t, vec.invalidY1))
	require.ErrorIs(t, err, ErrInvalidPoint)
	_, err = scalarMultVfy(s, unhex(t, vec.invalidY2Identity))
	require.ErrorIs(t, err, ErrIdentity)
	require.Equal(t, ristretto255.NewIdentityElement().Bytes(), unhex(t, vec.invalidY2Identity))
}

// Appendix B.3.11: "When points Y_i1 or Y_i2 are included in message of A or
// B the protocol MUST abort."
func TestInvalidVectorsAbort(t *testing.T) {
	prs, ci, sid := unhex(t, vec.PRS), unhex(t, vec.CI), unhex(t, vec.sid)
	for _, c := range []struct {
		name string
		msg  string
		want error
	}{
		{"Y_i1", vec.invalidY1, ErrInvalidPoint},
		{"Y_i2", vec.invalidY2Identity, ErrIdentity},
	} {
		t.Run(c.name, func(t *testing.T) {
			msgB, isk, err := Respond(nil, prs, ci, sid, nil, unhex(t, c.msg), nil)
			require.ErrorIs(t, err, c.want)
			require.Nil(t, msgB)
			require.Nil(t, isk)

			st, _, err := Start(nil, prs, ci, sid, nil)
			require.NoError(t, err)
			isk, err = st.Finish(unhex(t, c.msg), nil)
			require.ErrorIs(t, err, c.want)
			require.Nil(t, isk)
		})
	}
}
