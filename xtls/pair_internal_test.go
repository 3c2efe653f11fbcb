package xtls

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/internal/cpace"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	require.NoError(t, err)
	return b
}

func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// Test vectors for the framing, the channel identifier and the
// key-confirmation MACs; docs/protocol.md repeats them. The MACs were
// computed independently (Python's hmac and hashlib, HKDF by hand).
func TestPairingVectors(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, writeFrame(&buf, frameCPaceA, func() []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}()))
	require.Equal(t, "010020000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", hex.EncodeToString(buf.Bytes()))
	buf.Reset()
	require.NoError(t, writeFrame(&buf, frameFail, []byte{byte(PairingWrongCode)}))
	require.Equal(t, "ff000101", hex.EncodeToString(buf.Bytes()))
	buf.Reset()
	require.NoError(t, writeFrame(&buf, frameOK, nil))
	require.Equal(t, "040000", hex.EncodeToString(buf.Bytes()))

	require.Equal(t,
		"75726e3a786d70703a78746c733a302070616972696e670011616c696365406578616d706c652e6e6574000f626f62406578616d706c652e6f7267",
		hex.EncodeToString(channelID("alice@example.net", "bob@example.org")))

	isk := make([]byte, 64)
	for i := range isk {
		isk[i] = byte(i)
	}
	in := pairingInputs{sid: fill(2, 32)}
	copy(in.fpI[:], fill(3, 32))
	copy(in.fpR[:], fill(4, 32))
	macA, macB, err := confirmMACs(isk, in)
	require.NoError(t, err)
	require.Equal(t, "f3166c281f03f98c0825528ae95d55f0418369e8cb4322d498702ed350c88ffd", hex.EncodeToString(macA))
	require.Equal(t, "3243f9c745a0858da856b68442da41a1178884751085c6d39fbc49f5a23196d1", hex.EncodeToString(macB))
}

// A whole pairing run with fixed scalars, as another implementation would
// check it: the code as typed, normalised, the CPace messages, the ISK and
// the two MACs. The CPace steps are themselves checked against the draft's
// vectors in internal/cpace.
func TestPairingTranscriptVector(t *testing.T) {
	code := NormalizePairingCode([]byte(" 1234 5678-9012 "))
	require.Equal(t, "123456789012", string(code))
	in := pairingInputs{sid: fill(0x5a, 32), ci: channelID("alice@example.net", "bob@example.org")}
	copy(in.fpI[:], fill(0xa1, 32))
	copy(in.fpR[:], fill(0xb2, 32))

	st, ya, err := cpace.Start(bytes.NewReader(fill(0x11, 64)), code, in.ci, in.sid, []byte(adInitiator))
	require.NoError(t, err)
	yb, iskB, err := cpace.Respond(bytes.NewReader(fill(0x22, 64)), code, in.ci, in.sid, []byte(adResponder), ya, []byte(adInitiator))
	require.NoError(t, err)
	iskA, err := st.Finish(yb, []byte(adResponder))
	require.NoError(t, err)
	require.Equal(t, iskA, iskB)
	macA, macB, err := confirmMACs(iskA, in)
	require.NoError(t, err)

	got := map[string]string{
		"Ya": hex.EncodeToString(ya), "Yb": hex.EncodeToString(yb), "ISK": hex.EncodeToString(iskA),
		"MAC_A": hex.EncodeToString(macA), "MAC_B": hex.EncodeToString(macB),
	}
	want := map[string]string{
		"Ya":    goldenYa,
		"Yb":    goldenYb,
		"ISK":   goldenISK,
		"MAC_A": goldenMACA,
		"MAC_B": goldenMACB,
	}
	require.Equal(t, want, got)
}

// Golden values of TestPairingTranscriptVector (docs/protocol.md).
const (
	goldenYa   = "b83e86339ed1e1bb43f91be1535ac6420475fe3d2e7974b7211295510b7d4e73"
	goldenYb   = "9287c3cbd1513aa66c2cbf75cf80c48efc42e0aa91030367475296a99c95f554"
	goldenISK  = "19bde2c04c485d275d5a0dc68714a9316035ab73a80bec0c04af577123c3f88e8b810a24e5c1a2243fd8678013005720117b2fe7e1e5de8f898a3e1f68d057d6"
	goldenMACA = "a64d2941d04a6f51310ee2ad3a178533ba49ab9b76c011976732557cec5953b3"
	goldenMACB = "eff995ff73add12971233eb6e98f25b383b5244bbf24fc308d3833891bdcb83c"
)

// readFrame never panics, never allocates past maxFrame, and what it
// accepts is exactly what writeFrame writes.
func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{frameCPaceA, 0, 32, 1, 2, 3})
	f.Add(unhex(f, "010020000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"))
	f.Add([]byte{frameFail, 0, 1, 1})
	f.Add([]byte{frameOK, 0, 0})
	f.Add([]byte{frameOK, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		typ, body, err := readFrame(r)
		if err != nil {
			if !errors.Is(err, errFrame) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error %v", err)
			}
			if errors.Is(err, errFrame) && (len(b) < 3 || int(b[1])<<8|int(b[2]) <= maxFrame) {
				t.Fatalf("%v for a frame within bounds", err)
			}
			return
		}
		if len(body) > maxFrame {
			t.Fatalf("%d-byte body accepted", len(body))
		}
		var out bytes.Buffer
		if err := writeFrame(&out, typ, body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), b[:len(b)-r.Len()]) {
			t.Fatalf("round trip: read % x, wrote % x", b[:len(b)-r.Len()], out.Bytes())
		}
		// expectFrame turns every frame into a value or a typed error.
		_, err = expectFrame(bytes.NewReader(out.Bytes()), jid.MustParse("a@b"), frameCPaceA, cpace.MessageSize)
		var pe *PairingError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("untyped error %v", err)
		}
	})
}

// The pairing attempt counter: an attempt counts as failed from its start
// until it succeeds; three kill a code for one peer, however they ended
// and even while they still run; other peers and other codes are
// untouched; spelling does not matter.
func TestPairStateCounts(t *testing.T) {
	var p pairState
	alice := jid.MustParse("alice@example.net/phone")
	aliceLaptop := jid.MustParse("alice@example.net/laptop")
	bob := jid.MustParse("bob@example.org/a")
	code := NormalizePairingCode([]byte("1111 2222 3333"))
	require.True(t, p.begin(alice, code))
	p.succeeded(alice, code)
	require.Equal(t, 0, p.count(alice, code), "a success is not a failure")
	for want := 1; want <= 3; want++ {
		require.True(t, p.begin(alice, code))
		require.Equal(t, want, p.count(alice, code))
	}
	require.False(t, p.begin(alice, code), "three attempts begun, none succeeded")
	require.False(t, p.begin(aliceLaptop, NormalizePairingCode([]byte("1111-2222-3333"))), "per bare JID, same code")
	require.Equal(t, 0, p.count(bob, code))
	require.True(t, p.begin(bob, code))
	require.True(t, p.begin(alice, NormalizePairingCode([]byte("1111 2222 3334"))))
}
