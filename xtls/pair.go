package xtls

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/internal/cpace"
)

// Pairing: after a TLS handshake that completed provisionally, both ends run
// CPace (draft-irtf-cfrg-cpace, CPACE-RISTR255-SHA512) inside the TLS
// connection, with the code as the password, a session id exported from
// this TLS connection and a channel identifier naming both bare JIDs,
// followed by key confirmation in both directions over both certificates'
// fingerprints. A relay that terminates TLS on both sides has different
// exporters on each side, so it cannot make pairing succeed even knowing
// the code, and it learns nothing it can test offline; each run is one
// online guess, and a code dies after three failures. docs/protocol.md
// describes the messages.

// Mode bytes: the initiator's first byte inside TLS says what follows.
const (
	modeApp  = 'A' // application data
	modePair = 'P' // pairing frames, then application data
)

// Pairing frame types.
const (
	frameCPaceA   = 1    // initiator: Ya (32 bytes)
	frameCPaceB   = 2    // responder: Yb (32 bytes) || MAC_B (32 bytes)
	frameConfirmA = 3    // initiator: MAC_A (32 bytes)
	frameOK       = 4    // responder: empty
	frameFail     = 0xff // either: one byte, a PairingFailure
)

// maxFrame bounds a pairing frame's body.
const maxFrame = 256

const (
	exporterLabel = "EXPORTER-urn:xmpp:xtls:0 pairing"
	ciPrefix      = "urn:xmpp:xtls:0 pairing"
	adInitiator   = "initiator"
	adResponder   = "responder"
	confirmInfoA  = "urn:xmpp:xtls:0 pairing confirm initiator"
	confirmInfoB  = "urn:xmpp:xtls:0 pairing confirm responder"
	// maxPairFailures is how often a code may fail for one peer.
	maxPairFailures = 3
)

// PairingFailure says why pairing failed.
type PairingFailure byte

// Why pairing failed.
const (
	// PairingWrongCode: the two ends used different codes (or someone in
	// the middle tried one).
	PairingWrongCode PairingFailure = 1
	// PairingBroken: the exchange was broken: a malformed or unexpected
	// message, the connection lost.
	PairingBroken PairingFailure = 2
	// PairingNoCode: this end, or the peer, has no pairing code for the
	// other.
	PairingNoCode PairingFailure = 3
	// PairingCodeDead: the code has failed three times for this peer and is
	// no longer accepted; make a new one.
	PairingCodeDead PairingFailure = 4
	// PairingRequired: this end would trust the peer only after pairing, and
	// the peer did not pair.
	PairingRequired PairingFailure = 5
	// PairingNotTrusted: the responder does not trust the initiator's
	// certificate; a responder that decides only after the handshake sends
	// it in place of its verdict OK (contract 3). xtls itself refuses during
	// the handshake, with a TLS alert.
	PairingNotTrusted PairingFailure = 6
)

func (f PairingFailure) String() string {
	switch f {
	case PairingWrongCode:
		return "wrong code"
	case PairingBroken:
		return "exchange broken"
	case PairingNoCode:
		return "no pairing code"
	case PairingCodeDead:
		return "code used up"
	case PairingRequired:
		return "pairing required"
	case PairingNotTrusted:
		return "not trusted"
	}
	return fmt.Sprintf("PairingFailure(%d)", byte(f))
}

// PairingError reports a pairing that failed. Nothing was pinned and no
// application data crossed.
type PairingError struct {
	Peer   jid.JID
	Reason PairingFailure
	// Remote says the peer reported the failure.
	Remote bool
	// Left is how many more tries this code has with this peer (for
	// PairingWrongCode).
	Left int
	Err  error
}

func (e *PairingError) Error() string {
	s := fmt.Sprintf("xtls: pairing with %s failed: %s", e.Peer, e.Reason)
	if e.Remote {
		s += " (reported by the peer)"
	}
	switch e.Reason {
	case PairingWrongCode:
		if e.Left > 0 {
			s += fmt.Sprintf("; %d more tries with this code", e.Left)
		} else {
			s += "; this code is now used up: make a new one"
		}
	case PairingCodeDead:
		s += ": it failed three times; make a new one"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error, if any.
func (e *PairingError) Unwrap() error { return e.Err }

// NewPairingCode returns a fresh random code that people can read to each
// other: 12 decimal digits in three groups of four ("0421 7730 5918"),
// about 39.9 bits. Each pairing run lets an attacker test one guess online
// (and three failures kill the code), so this is plenty.
func NewPairingCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e12))
	if err != nil {
		panic("xtls: crypto/rand failed: " + err.Error())
	}
	s := fmt.Sprintf("%012d", n)
	return s[0:4] + " " + s[4:8] + " " + s[8:12]
}

// NormalizePairingCode returns the bytes a code stands for: a code made
// only of digits, spaces and dashes loses its spaces and dashes (so
// "0421 7730 5918" and "042177305918" are one code); any other code, a
// device's printed secret say, is used as it is, trimmed of surrounding
// spaces.
func NormalizePairingCode(code []byte) []byte {
	code = bytes.TrimSpace(code)
	digits := make([]byte, 0, len(code))
	for _, c := range code {
		switch {
		case c >= '0' && c <= '9':
			digits = append(digits, c)
		case c == ' ' || c == '-':
		default:
			return append([]byte(nil), code...)
		}
	}
	return digits
}

// pairState counts failed pairings per peer and code. An attempt counts as
// failed from the moment it begins until it succeeds: a peer can test its
// guess as soon as it has the other side's CPace message, and could
// otherwise walk away before the confirmation (a "broken" exchange, never
// counted) or run many attempts at once, each passing a check made before
// any had failed.
type pairState struct {
	mu       sync.Mutex
	failures map[string]map[[32]byte]int // bare JID -> code hash -> failures
}

// begin counts an attempt with code against peer as failed and reports
// true, or reports false if the code has failed maxPairFailures times.
func (p *pairState) begin(peer jid.JID, code []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failures == nil {
		p.failures = make(map[string]map[[32]byte]int)
	}
	k := peer.Bare().String()
	if p.failures[k] == nil {
		p.failures[k] = make(map[[32]byte]int)
	}
	h := sha256.Sum256(code)
	if p.failures[k][h] >= maxPairFailures {
		return false
	}
	p.failures[k][h]++
	return true
}

// succeeded takes back the failure that begin counted.
func (p *pairState) succeeded(peer jid.JID, code []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k, h := peer.Bare().String(), sha256.Sum256(code)
	if p.failures[k][h] > 0 {
		p.failures[k][h]--
	}
}

func (p *pairState) count(peer jid.JID, code []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures[peer.Bare().String()][sha256.Sum256(code)]
}

// writeFrame writes one pairing frame: type, 16-bit big-endian length,
// body.
func writeFrame(w io.Writer, typ byte, body []byte) error {
	b := make([]byte, 3+len(body))
	b[0] = typ
	binary.BigEndian.PutUint16(b[1:], uint16(len(body)))
	copy(b[3:], body)
	_, err := w.Write(b)
	return err
}

var errFrame = errors.New("malformed pairing frame")

// readFrame reads one pairing frame.
func readFrame(r io.Reader) (typ byte, body []byte, err error) {
	var h [3]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[1:]))
	if n > maxFrame {
		return 0, nil, fmt.Errorf("%w: %d-byte body", errFrame, n)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return h[0], body, nil
}

// expectFrame reads a frame of type want and size n; a fail frame from the
// peer becomes its PairingError.
func expectFrame(r io.Reader, peer jid.JID, want byte, n int) ([]byte, error) {
	typ, body, err := readFrame(r)
	if err != nil {
		return nil, &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	if typ == frameFail && len(body) == 1 {
		return nil, &PairingError{Peer: peer, Reason: PairingFailure(body[0]), Remote: true}
	}
	if typ != want || len(body) != n {
		return nil, &PairingError{Peer: peer, Reason: PairingBroken, Err: fmt.Errorf("%w: type %d, %d bytes", errFrame, typ, len(body))}
	}
	return body, nil
}

// pairingInputs are what both ends must agree on.
type pairingInputs struct {
	sid, ci  []byte
	fpI, fpR Fingerprint // initiator's and responder's leaf fingerprints
}

func (c *Conn) pairingInputs() (pairingInputs, error) {
	cs := c.tls.ConnectionState()
	sid, err := cs.ExportKeyingMaterial(exporterLabel, nil, 32)
	if err != nil {
		return pairingInputs{}, err
	}
	own := SPKIFingerprint(c.h.cfg.Certificate.Leaf)
	peerFP := SPKIFingerprint(cs.PeerCertificates[0])
	ini, res := c.state.Local.Bare().String(), c.state.Peer.Bare().String()
	in := pairingInputs{sid: sid, fpI: own, fpR: peerFP}
	if !c.state.Initiator {
		ini, res = res, ini
		in.fpI, in.fpR = peerFP, own
	}
	in.ci = channelID(ini, res)
	return in, nil
}

// channelID is CPace's channel identifier: our prefix, then the
// initiator's and the responder's bare JIDs, each after its 16-bit
// big-endian length.
func channelID(initiator, responder string) []byte {
	ci := make([]byte, 0, len(ciPrefix)+4+len(initiator)+len(responder))
	ci = append(ci, ciPrefix...)
	ci = binary.BigEndian.AppendUint16(ci, uint16(len(initiator)))
	ci = append(ci, initiator...)
	ci = binary.BigEndian.AppendUint16(ci, uint16(len(responder)))
	return append(ci, responder...)
}

// confirmMACs derives both key-confirmation MACs from the CPace ISK. Each
// covers both certificates' fingerprints.
func confirmMACs(isk []byte, in pairingInputs) (macA, macB []byte, err error) {
	mac := func(info string) ([]byte, error) {
		k, err := hkdf.Key(sha256.New, isk, in.sid, info, 32)
		if err != nil {
			return nil, err
		}
		m := hmac.New(sha256.New, k)
		m.Write(in.fpI[:])
		m.Write(in.fpR[:])
		return m.Sum(nil), nil
	}
	if macA, err = mac(confirmInfoA); err != nil {
		return nil, nil, err
	}
	macB, err = mac(confirmInfoB)
	return macA, macB, err
}

// pairAsInitiator runs the initiator's side: it has already written the
// mode byte.
func (c *Conn) pairAsInitiator(code []byte) error {
	peer := c.state.Peer
	in, err := c.pairingInputs()
	if err != nil {
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	st, ya, err := cpace.Start(nil, code, in.ci, in.sid, []byte(adInitiator))
	if err != nil {
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	if err := writeFrame(c.tls, frameCPaceA, ya); err != nil {
		return c.refusedFirst(&PairingError{Peer: peer, Reason: PairingBroken, Err: err})
	}
	body, err := expectFrame(c.tls, peer, frameCPaceB, cpace.MessageSize+sha256.Size)
	if err != nil {
		return err
	}
	isk, err := st.Finish(body[:cpace.MessageSize], []byte(adResponder))
	if err != nil {
		c.sendFail(PairingBroken)
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	macA, macB, err := confirmMACs(isk, in)
	if err != nil {
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	if !hmac.Equal(macB, body[cpace.MessageSize:]) {
		c.sendFail(PairingWrongCode)
		return c.wrongCode(code, false)
	}
	if err := writeFrame(c.tls, frameConfirmA, macA); err != nil {
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	if _, err := expectFrame(c.tls, peer, frameOK, 0); err != nil {
		var pe *PairingError
		if errors.As(err, &pe) && pe.Reason == PairingWrongCode {
			return c.wrongCode(code, true)
		}
		return err
	}
	return nil
}

// pairAsResponder runs the responder's side: it has read the mode byte. The
// closing OK is sendVerdict's, once the pins are recorded.
func (c *Conn) pairAsResponder(code []byte) error {
	peer := c.state.Peer
	in, err := c.pairingInputs()
	if err != nil {
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	ya, err := expectFrame(c.tls, peer, frameCPaceA, cpace.MessageSize)
	if err != nil {
		return err
	}
	yb, isk, err := cpace.Respond(nil, code, in.ci, in.sid, []byte(adResponder), ya, []byte(adInitiator))
	if err != nil {
		c.sendFail(PairingBroken)
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	macA, macB, err := confirmMACs(isk, in)
	if err != nil {
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	if err := writeFrame(c.tls, frameCPaceB, append(yb, macB...)); err != nil {
		return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
	}
	got, err := expectFrame(c.tls, peer, frameConfirmA, sha256.Size)
	if err != nil {
		var pe *PairingError
		if errors.As(err, &pe) && pe.Reason == PairingWrongCode {
			return c.wrongCode(code, true)
		}
		return err
	}
	if !hmac.Equal(macA, got) {
		c.sendFail(PairingWrongCode)
		return c.wrongCode(code, false)
	}
	// OK follows once the pins are recorded (sendVerdict).
	return nil
}

// wrongCode is the error for a wrong code (begin counted the failure).
func (c *Conn) wrongCode(code []byte, remote bool) error {
	n := c.h.pairs.count(c.state.Peer, code)
	return &PairingError{Peer: c.state.Peer, Reason: PairingWrongCode, Remote: remote, Left: max(0, maxPairFailures-n)}
}

// sendFail tells the peer why pairing stops (best effort).
func (c *Conn) sendFail(why PairingFailure) {
	_ = writeFrame(c.tls, frameFail, []byte{byte(why)})
}

// pairingCode returns the code this end has for the peer: the one given to
// Dial, else Config.PairingCode's, normalised; nil if none.
func (c *Conn) pairingCode() []byte {
	if c.dialCode != nil {
		return c.dialCode
	}
	if c.h.cfg.PairingCode == nil {
		return nil
	}
	code, ok := c.h.cfg.PairingCode(c.state.Peer)
	if !ok || len(code) == 0 {
		return nil
	}
	return NormalizePairingCode(code)
}
