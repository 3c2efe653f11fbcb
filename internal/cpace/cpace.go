// Package cpace implements CPace, the balanced password-authenticated key
// exchange (PAKE) of draft-irtf-cfrg-cpace-21 ("CPace, a balanced composable
// PAKE", M. Abdalla, B. Haase, J. Hesse), with the cipher suite that uses the
// ristretto255 prime-order group (RFC 9496) and SHA-512.
//
// Two parties that share a low-entropy secret, the password-related string
// PRS (for example a short pairing code), derive a strong shared intermediate
// session key ISK without exposing PRS to offline dictionary attacks: an
// eavesdropper learns nothing about PRS, and an active attacker can test one
// guess per protocol run.
//
// Both parties hash PRS together with a channel identifier CI and a session
// identifier sid into a secret generator g of the group (section 8.1 and 8.3
// of the draft). Each then picks a secret scalar y, sends Y = y·g together with
// public associated data AD, and computes K = y·Y' from the peer's message Y'.
// ISK is the SHA-512 hash of lv_cat("CPaceRistretto255_ISK", sid, K)
// followed by the protocol transcript (section 7.2). Both sides obtain the
// same ISK if and only if they used the same PRS, CI and sid and saw the same
// messages and associated data.
//
// The package provides the initiator-responder setting (the initiator A
// speaks first; [Start], [Respond], [State.Finish]; transcript_ir) and the
// symmetric setting where either party may speak first ([StartSymmetric];
// transcript_oc, ordered concatenation).
//
// CPace itself gives implicit authentication only. Callers that need explicit
// authentication must add a key confirmation round keyed from ISK (section
// 10.4 of the draft), and should feed ISK through a KDF before use. Following
// section 10.1, party identities that both sides know in advance belong in CI,
// with the initiator's identity first.
//
// Secret scalars, the generator and K never leave the package; they and the
// buffers holding PRS-derived data are overwritten once no longer needed,
// as far as Go allows (copies made by the runtime or inside the ristretto255
// package are out of reach).
package cpace

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"

	"github.com/gtank/ristretto255"
)

// Suite is the name of the cipher suite implemented by this package, as
// spelled in section 5 of draft-irtf-cfrg-cpace-21: group ristretto255
// (G_Ristretto255, section 8.3) with hash SHA-512.
const Suite = "CPACE-RISTR255-SHA512"

// MessageSize is the length in bytes of a CPace message Y, the canonical
// encoding of a ristretto255 element.
const MessageSize = 32

// ISKSize is the length in bytes of the intermediate session key ISK, the
// output length of SHA-512.
const ISKSize = sha512.Size

const (
	// dsi is G_Ristretto255.DSI.
	dsi = "CPaceRistretto255"
	// dsiISK is G.DSI || b"_ISK".
	dsiISK = dsi + "_ISK"
	// sInBytes is H.s_in_bytes, the input block size of SHA-512.
	sInBytes = 128
	// groupSizeBits is G_Ristretto255.group_size_bits.
	groupSizeBits = 252
)

var (
	// ErrInvalidPoint is returned when a received message is not the
	// canonical 32-byte encoding of a ristretto255 element.
	ErrInvalidPoint = errors.New("cpace: invalid group element encoding")
	// ErrIdentity is returned when a received message encodes the identity
	// element, or when the shared point K is the identity. The draft
	// requires the protocol to abort in both cases.
	ErrIdentity = errors.New("cpace: identity element")
	// ErrFinished is returned by [State.Finish] when the State has already
	// been used; a State can complete at most one exchange.
	ErrFinished = errors.New("cpace: state already used")
)

// Role tells which part a party plays in a CPace exchange. It selects the
// transcript used in the ISK derivation.
type Role int

const (
	// Initiator is party A: it sends the first message (Ya, ADa).
	Initiator Role = iota + 1
	// Responder is party B: it answers the initiator's message with
	// (Yb, ADb).
	Responder
	// Symmetric is a party in the symmetric setting, where the messages
	// are not ordered by the protocol flow. Its ISK uses the ordered
	// concatenation transcript_oc.
	Symmetric
)

// String returns the name of the role.
func (r Role) String() string {
	switch r {
	case Initiator:
		return "initiator"
	case Responder:
		return "responder"
	case Symmetric:
		return "symmetric"
	default:
		return fmt.Sprintf("cpace.Role(%d)", int(r))
	}
}

// State is a party's secret state between sending its own message and
// receiving the peer's. It holds the secret scalar; it must not be copied,
// is not safe for concurrent use, and is cleared by [State.Finish].
type State struct {
	role Role
	y    *ristretto255.Scalar // nil once used
	sid  []byte
	msg  []byte // own Y
	ad   []byte // own AD
}

// Start begins an exchange as the initiator. It derives the generator from
// the password-related string prs, the channel identifier ci and the session
// identifier sid, samples a secret scalar from rand (crypto/rand if rand is
// nil) and returns the state together with the message Ya to send to the
// responder. ad is the initiator's associated data ADa; it is sent in the
// clear alongside Ya and authenticated by ISK.
func Start(rand io.Reader, prs, ci, sid, ad []byte) (s *State, msg []byte, err error) {
	return start(Initiator, rand, prs, ci, sid, ad)
}

// StartSymmetric begins an exchange in the symmetric setting, where either
// party may send first. Both parties call StartSymmetric, exchange their
// messages and associated data, and call [State.Finish] with the peer's. The
// draft requires the associated data of the two parties to differ in this
// setting (section 10.1.1), for instance by including random data; otherwise
// use the initiator-responder setting.
func StartSymmetric(rand io.Reader, prs, ci, sid, ad []byte) (s *State, msg []byte, err error) {
	return start(Symmetric, rand, prs, ci, sid, ad)
}

// Respond runs the responder's side of an exchange in one step. It takes the
// same prs, ci and sid as the initiator, its own associated data adB, and the
// initiator's message msgA with its associated data adA. It returns the
// message Yb to send back to the initiator, and the intermediate session key
// ISK.
//
// Respond returns [ErrInvalidPoint] if msgA is not a valid encoding and
// [ErrIdentity] if it encodes the identity element; the exchange must then be
// aborted.
func Respond(rand io.Reader, prs, ci, sid, adB, msgA, adA []byte) (msgB, isk []byte, err error) {
	// Reject a malformed peer message before doing any secret-dependent work.
	if _, err := decodeElement(msgA); err != nil {
		return nil, nil, err
	}
	s, msgB, err := start(Responder, rand, prs, ci, sid, adB)
	if err != nil {
		return nil, nil, err
	}
	isk, err = s.Finish(msgA, adA)
	if err != nil {
		return nil, nil, err
	}
	return msgB, isk, nil
}

// Role reports the role the state was created for.
func (s *State) Role() Role { return s.role }

// Finish completes the exchange with the peer's message and associated data:
// for the initiator, the responder's Yb and ADb. It returns the intermediate
// session key ISK, which both parties share if and only if they used the
// same PRS, CI and sid and saw the same messages and associated data.
//
// Finish returns [ErrInvalidPoint] if peerMsg is not a valid encoding and
// [ErrIdentity] if it encodes the identity element; the exchange must then be
// aborted. The secret scalar is erased whatever the outcome, so a State
// completes at most one exchange; later calls return [ErrFinished].
func (s *State) Finish(peerMsg, peerAD []byte) (isk []byte, err error) {
	if s == nil || s.y == nil {
		return nil, ErrFinished
	}
	y := s.y
	s.y = nil
	defer zeroScalar(y)

	k, err := scalarMultVfy(y, peerMsg)
	if err != nil {
		return nil, err
	}
	kb := k.Bytes()
	zeroElement(k)
	defer clear(kb)

	var transcript []byte
	switch s.role {
	case Initiator:
		transcript = transcriptIR(s.msg, s.ad, peerMsg, peerAD)
	case Responder:
		transcript = transcriptIR(peerMsg, peerAD, s.msg, s.ad)
	default:
		transcript = transcriptOC(s.msg, s.ad, peerMsg, peerAD)
	}
	return deriveISK(s.sid, kb, transcript), nil
}

// start implements the common first half: g = calculate_generator(PRS, CI,
// sid), y = sample_scalar(), Y = scalar_mult(y, g).
func start(role Role, rnd io.Reader, prs, ci, sid, ad []byte) (*State, []byte, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	y, err := sampleScalar(rnd)
	if err != nil {
		return nil, nil, err
	}
	g := calculateGenerator(prs, ci, sid)
	e := ristretto255.NewIdentityElement().ScalarMult(y, g)
	zeroElement(g)
	if e.Equal(ristretto255.NewIdentityElement()) == 1 {
		// Only possible if the generator hashed to the identity, which
		// happens with negligible probability; the peer would abort anyway.
		zeroScalar(y)
		return nil, nil, ErrIdentity
	}
	msg := e.Bytes()
	s := &State{
		role: role,
		y:    y,
		sid:  bytes.Clone(sid),
		msg:  msg,
		ad:   bytes.Clone(ad),
	}
	return s, bytes.Clone(msg), nil
}

// prependLen appends to dst the LEB128 encoding of len(data) followed by data
// (prepend_len, appendix A.1.1 of the draft).
func prependLen(dst, data []byte) []byte {
	n := uint64(len(data))
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	dst = append(dst, byte(n))
	return append(dst, data...)
}

// lvCat returns the concatenation of prepend_len of each argument (lv_cat,
// appendix A.1.3).
func lvCat(args ...[]byte) []byte {
	size := 0
	for _, a := range args {
		size += len(a) + 10 // a LEB128-encoded 64-bit length takes at most 10 bytes
	}
	out := make([]byte, 0, size)
	for _, a := range args {
		out = prependLen(out, a)
	}
	return out
}

// lenPrefixed returns len(prepend_len(b)).
func lenPrefixed(b []byte) int {
	n := 1
	for l := uint64(len(b)); l >= 0x80; l >>= 7 {
		n++
	}
	return n + len(b)
}

// generatorString returns lv_cat(DSI, PRS, zero_bytes(len_zpad), CI, sid)
// with len_zpad = max(0, s_in_bytes - 1 - len(prepend_len(PRS)) -
// len(prepend_len(DSI))) (section 8.1 and appendix A.2).
func generatorString(dsi, prs, ci, sid []byte, sInBytes int) []byte {
	zpad := max(0, sInBytes-1-lenPrefixed(prs)-lenPrefixed(dsi))
	return lvCat(dsi, prs, make([]byte, zpad), ci, sid)
}

// generatorHash returns H.hash(generator_string(G.DSI, PRS, CI, sid,
// H.s_in_bytes), 2 * G.field_size_bytes), the 64-byte input to the element
// derivation.
func generatorHash(prs, ci, sid []byte) [sha512.Size]byte {
	gs := generatorString([]byte(dsi), prs, ci, sid, sInBytes)
	h := sha512.Sum512(gs)
	clear(gs)
	return h
}

// calculateGenerator returns the secret generator
// g = element_derivation(generatorHash(PRS, CI, sid)) (section 8.3), in the
// internal representation.
func calculateGenerator(prs, ci, sid []byte) *ristretto255.Element {
	h := generatorHash(prs, ci, sid)
	g, err := ristretto255.NewIdentityElement().SetUniformBytes(h[:])
	clear(h[:])
	if err != nil {
		panic("cpace: SetUniformBytes rejected a 64-byte input: " + err.Error())
	}
	return g
}

// sampleScalar implements the recommended G.sample_scalar of section 8.3:
// 32 random bytes with the bits above group_size_bits (252) cleared, read as
// a little-endian integer. Since 2^252 is below the group order the result
// is always canonical. The zero scalar (probability 2^-252) is rejected and
// sampling repeated, as it would make the own message the identity.
func sampleScalar(rnd io.Reader) (*ristretto255.Scalar, error) {
	var b [32]byte
	defer clear(b[:])
	zero := ristretto255.NewScalar()
	for {
		if _, err := io.ReadFull(rnd, b[:]); err != nil {
			return nil, fmt.Errorf("cpace: reading random scalar: %w", err)
		}
		b[31] &= 1<<(groupSizeBits-248) - 1
		y, err := ristretto255.NewScalar().SetCanonicalBytes(b[:])
		if err != nil {
			panic("cpace: 252-bit scalar not canonical: " + err.Error())
		}
		if y.Equal(zero) == 0 {
			return y, nil
		}
	}
}

// decodeElement decodes a received message. It returns ErrInvalidPoint for
// anything but a canonical encoding and ErrIdentity for the identity
// element.
func decodeElement(msg []byte) (*ristretto255.Element, error) {
	if len(msg) != MessageSize {
		return nil, ErrInvalidPoint
	}
	e, err := ristretto255.NewIdentityElement().SetCanonicalBytes(msg)
	if err != nil {
		return nil, ErrInvalidPoint
	}
	if e.Equal(ristretto255.NewIdentityElement()) == 1 {
		return nil, ErrIdentity
	}
	return e, nil
}

// scalarMultVfy implements G.scalar_mult_vfy(y, X) of section 8.3, returning
// an error where the draft returns G.I: ErrInvalidPoint if X does not decode,
// ErrIdentity if X or y·X is the identity.
func scalarMultVfy(y *ristretto255.Scalar, x []byte) (*ristretto255.Element, error) {
	e, err := decodeElement(x)
	if err != nil {
		return nil, err
	}
	k := ristretto255.NewIdentityElement().ScalarMult(y, e)
	if k.Equal(ristretto255.NewIdentityElement()) == 1 {
		return nil, ErrIdentity
	}
	return k, nil
}

// transcriptIR returns lv_cat(Ya, ADa) || lv_cat(Yb, ADb), the transcript of
// the initiator-responder setting (section 6.3, appendix A.3.4).
func transcriptIR(ya, ada, yb, adb []byte) []byte {
	return append(lvCat(ya, ada), lvCat(yb, adb)...)
}

// transcriptOC returns o_cat(lv_cat(Ya, ADa), lv_cat(Yb, ADb)), the
// transcript of the symmetric setting (section 6.3, appendix A.3.6).
func transcriptOC(ya, ada, yb, adb []byte) []byte {
	return oCat(lvCat(ya, ada), lvCat(yb, adb))
}

// oCat returns b"oc" followed by the lexicographically larger of a and b and
// then the other one (appendix A.3.2). The inputs are public.
func oCat(a, b []byte) []byte {
	if bytes.Compare(a, b) <= 0 {
		a, b = b, a
	}
	out := make([]byte, 0, 2+len(a)+len(b))
	out = append(out, "oc"...)
	out = append(out, a...)
	return append(out, b...)
}

// deriveISK returns H.hash(lv_cat(G.DSI || b"_ISK", sid, K) || transcript)
// (section 7.2).
func deriveISK(sid, k, transcript []byte) []byte {
	// Size the buffer exactly so that no copy of K is left behind by a
	// reallocation.
	in := make([]byte, 0, lenPrefixed([]byte(dsiISK))+lenPrefixed(sid)+lenPrefixed(k)+len(transcript))
	in = prependLen(in, []byte(dsiISK))
	in = prependLen(in, sid)
	in = prependLen(in, k)
	in = append(in, transcript...)
	h := sha512.Sum512(in)
	clear(in)
	return h[:]
}

// zeroScalar overwrites a secret scalar with zero.
func zeroScalar(s *ristretto255.Scalar) { s.Set(ristretto255.NewScalar()) }

// zeroElement overwrites a secret element with the identity.
func zeroElement(e *ristretto255.Element) { e.Set(ristretto255.NewIdentityElement()) }
