package xtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// Contract 3 of the wire protocol (docs/protocol.md) adds the responder's
// verdict: after reading the initiator's mode byte A, the responder sends
// one frame, OK once it has accepted the initiator (and recorded its pins),
// Fail otherwise, so that Dial never reports success before the responder
// has accepted our certificate. Two ends run contract 3 when TLS ALPN
// negotiated alpnContract3; the handshake authenticates ALPN, so a server
// cannot strip it. A peer without ALPN runs contract 2: no verdict frame.

// alpnContract3 is the ALPN protocol ID of contract 3.
const alpnContract3 = "xmpp-xtls/3"

// nextProtos is what both ends offer and accept, most preferred first:
// contract 5 (reattach.go) only with re-attachment allowed.
func nextProtos(reattach bool) []string {
	if reattach {
		return []string{alpnContract5, alpnContract4, alpnContract3}
	}
	return []string{alpnContract4, alpnContract3}
}

// contract returns the contract version the two ends of c run, as ALPN
// negotiated it: 2 without ALPN.
func (c *Conn) contract() int {
	switch c.tls.ConnectionState().NegotiatedProtocol {
	case alpnContract5:
		return 5
	case alpnContract4:
		return 4
	case alpnContract3:
		return 3
	}
	return 2
}

// ErrNotTrustedByPeer: the peer did not accept our certificate. It refused
// it with a TLS certificate alert during the handshake, or (contract 3)
// with its verdict after the handshake. The peer's Config.AcceptFailed
// learns why.
var ErrNotTrustedByPeer = errors.New("xtls: the peer does not trust our certificate")

// NotTrustedByPeerError reports that the peer refused our certificate. It
// matches ErrNotTrustedByPeer with errors.Is and wraps what came from the
// peer (the TLS alert, as crypto/tls reports it).
type NotTrustedByPeerError struct {
	Peer jid.JID
	// Reason says how the peer said so: the TLS alert's description, or
	// "refused after the handshake".
	Reason string
	Err    error
}

func (e *NotTrustedByPeerError) Error() string {
	return fmt.Sprintf("xtls: %s does not trust our certificate (%s)", e.Peer, e.Reason)
}

// Is matches ErrNotTrustedByPeer.
func (e *NotTrustedByPeerError) Is(target error) bool { return target == ErrNotTrustedByPeer }

// Unwrap returns what came from the peer.
func (e *NotTrustedByPeerError) Unwrap() error { return e.Err }

// certificateAlerts are the TLS alerts (RFC 8446, section 6.2) by which a
// peer refuses a certificate.
var certificateAlerts = map[uint64]bool{
	42:  true, // bad_certificate: what crypto/tls sends when VerifyConnection fails
	43:  true, // unsupported_certificate
	44:  true, // certificate_revoked
	45:  true, // certificate_expired
	46:  true, // certificate_unknown
	48:  true, // unknown_ca
	49:  true, // access_denied
	116: true, // certificate_required
}

// refusedCertificate reports whether err is a TLS alert from the peer that
// refuses our certificate, and returns its description. crypto/tls reports
// a received alert as a *net.OpError "remote error" around a value of an
// unexported uint8 type, so the alert's number is read by reflection.
func refusedCertificate(err error) (string, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) && certificateAlerts[uint64(ae)] {
		return ae.Error(), true
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return "", false
	}
	if v := reflect.ValueOf(op.Err); v.Kind() == reflect.Uint8 && certificateAlerts[v.Uint()] {
		return op.Err.Error(), true
	}
	return "", false
}

// notTrustedByPeer turns a refusal of our certificate into a
// *NotTrustedByPeerError, and returns any other error as it is.
func notTrustedByPeer(peer jid.JID, err error) error {
	if why, ok := refusedCertificate(err); ok {
		return &NotTrustedByPeerError{Peer: peer, Reason: why, Err: err}
	}
	return err
}

// errPeerFailed reports a Fail verdict other than "pairing required" or
// "not trusted" after mode A.
var errPeerFailed = errors.New("xtls: the peer did not accept the tunnel")

// errBadVerdict is the reason an initiator aborts a tunnel whose responder
// sent something other than OK or Fail as its verdict.
var errBadVerdict = errors.New("xtls: the peer's verdict is not an OK or Fail frame")

// readVerdict reads the responder's verdict after mode A (contract 3).
// refusedFirst returns, for an initiator whose write after the handshake
// failed (err), what the responder said before it ended the tunnel, if it
// said anything: a responder that refuses us (a TLS alert, a Fail frame)
// flushes its word and then aborts, and the abort can reach our write
// before we read the word, which is still buffered. Otherwise err.
func (c *Conn) refusedFirst(err error) error {
	if c.mode == modePair {
		// Pairing: a Fail frame, in any contract, or a TLS alert.
		typ, body, rerr := readFrame(c.tls)
		switch {
		case rerr == nil && typ == frameFail && len(body) == 1:
			return &PairingError{Peer: c.state.Peer, Reason: PairingFailure(body[0]), Remote: true}
		case rerr != nil && errors.Is(notTrustedByPeer(c.state.Peer, rerr), ErrNotTrustedByPeer):
			return notTrustedByPeer(c.state.Peer, rerr)
		}
		return err
	}
	if c.contract() < 3 {
		return err
	}
	verr := c.readVerdict()
	var pe *PairingError
	if errors.Is(verr, ErrNotTrustedByPeer) || errors.Is(verr, errPeerFailed) || errors.As(verr, &pe) && pe.Remote {
		return verr
	}
	return err
}

func (c *Conn) readVerdict() error {
	peer := c.state.Peer
	typ, body, err := readFrame(c.tls)
	if errors.Is(err, errFrame) {
		c.raw.Conn.Abort(stanza.PolicyViolation, errBadVerdict.Error())
		return fmt.Errorf("%w: %w", errBadVerdict, err)
	}
	if err != nil {
		if e := notTrustedByPeer(peer, err); e != err {
			return e
		}
		return fmt.Errorf("xtls: waiting for %s to accept our certificate: %w", peer, err)
	}
	switch {
	case typ == frameOK && len(body) == 0:
		return nil
	case typ == frameFail && len(body) == 1:
		switch r := PairingFailure(body[0]); r {
		case PairingNotTrusted:
			return &NotTrustedByPeerError{Peer: peer, Reason: "refused after the handshake"}
		case PairingRequired:
			return &PairingError{Peer: peer, Reason: r, Remote: true}
		default:
			// No pairing ran: Fail 2 says the peer could not complete its
			// side (record its pins, say).
			return fmt.Errorf("%w: %s failed after the handshake (%v)", errPeerFailed, peer, r)
		}
	}
	c.raw.Conn.Abort(stanza.PolicyViolation, errBadVerdict.Error())
	return fmt.Errorf("%w: type %d, %d bytes", errBadVerdict, typ, len(body))
}

// sendVerdict is the responder's last word before the application's
// stream: OK once the initiator is accepted and its pins recorded, owed in
// mode P (the end of pairing) and, in contract 3, in mode A. failed is the
// error that stopped the handshake after the mode byte, if any.
func (c *Conn) sendVerdict(failed error) error {
	if c.state.Initiator || !(c.mode == modePair || c.mode == modeApp && c.contract() >= 3) {
		return failed
	}
	if failed != nil {
		var pe *PairingError
		if !errors.As(failed, &pe) {
			// Pins could not be recorded, say: the initiator must not
			// take the tunnel for accepted.
			c.sendFail(PairingBroken)
		}
		return failed
	}
	if err := writeFrame(c.tls, frameOK, nil); err != nil {
		return &PairingError{Peer: c.state.Peer, Reason: PairingBroken, Err: err}
	}
	return nil
}
