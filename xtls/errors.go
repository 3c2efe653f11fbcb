package xtls

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"mellium.im/xmpp/jid"
)

// Errors of the xtls package, usable with errors.Is. Dial's errors also wrap
// the stanza.Error that caused them, as it came.
var (
	// ErrNotSupported: the peer does not offer XTLS (it answered the start
	// with service-unavailable and its disco#info lacks the feature, or it
	// does not implement the tunnel method).
	ErrNotSupported = errors.New("xtls: peer does not support XTLS")
	// ErrPeerUnavailable: the peer's full JID did not answer: it is offline,
	// or answers neither the start nor disco#info, or a server on the way
	// could not reach the peer's server (remote-server-not-found,
	// remote-server-timeout).
	ErrPeerUnavailable = errors.New("xtls: peer unavailable")
	// ErrRefused: the peer refused the tunnel (not-acceptable, forbidden,
	// not-allowed or not-authorized).
	ErrRefused = errors.New("xtls: peer refused the tunnel")
	// ErrUntrusted: no trust rule accepted the peer's certificate.
	ErrUntrusted = errors.New("xtls: peer certificate not trusted")
	// ErrTruncated: the peer closed the tunnel without a TLS close_notify
	// first, so the data may have been cut short.
	ErrTruncated = fmt.Errorf("xtls: tunnel closed without TLS close_notify: %w", io.ErrUnexpectedEOF)
	// ErrClosed: the Handler or Listener was closed.
	ErrClosed = errors.New("xtls: closed")
)

// PinMismatchError reports a peer whose bare JID has pinned keys and who
// presented another one.
type PinMismatchError struct {
	Peer      jid.JID
	Pinned    []Fingerprint
	Presented Fingerprint
}

func (e *PinMismatchError) Error() string {
	pinned := make([]string, len(e.Pinned))
	for i, p := range e.Pinned {
		pinned[i] = p.String()
	}
	return fmt.Sprintf("xtls: %s presented key %s, but %s pinned",
		e.Peer.Bare(), e.Presented, strings.Join(pinned, ", ")+map[bool]string{true: " is", false: " are"}[len(pinned) == 1])
}

// UntrustedError says why a certificate was not trusted; it matches
// ErrUntrusted with errors.Is and wraps the reason (the PKIX error, say).
type UntrustedError struct {
	Peer        jid.JID
	Fingerprint Fingerprint
	Err         error
}

func (e *UntrustedError) Error() string {
	s := fmt.Sprintf("xtls: certificate of %s (%s) not trusted", e.Peer, e.Fingerprint)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is matches ErrUntrusted.
func (e *UntrustedError) Is(target error) bool { return target == ErrUntrusted }

// Unwrap returns the reason.
func (e *UntrustedError) Unwrap() error { return e.Err }

// PolicyError reports a handshake that failed because the peer offered only
// options below xtls's TLS policy (a version below the minimum, or no AEAD
// cipher suite with ECDHE for TLS 1.2).
type PolicyError struct {
	Err error
}

func (e *PolicyError) Error() string {
	return "xtls: the peer offers only TLS options weaker than the policy (TLS 1.2 or later; for 1.2, ECDHE with AES-GCM or ChaCha20-Poly1305): " + e.Err.Error()
}

// Unwrap returns the TLS error.
func (e *PolicyError) Unwrap() error { return e.Err }

// policyViolation recognises crypto/tls errors that mean the two ends share
// no acceptable version or cipher suite. crypto/tls reports them as plain
// errors and alerts, so this looks at their text.
func policyViolation(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	for _, m := range []string{
		"unsupported versions", "protocol version not supported", "no cipher suite supported",
		"no mutually supported", "unsupported cipher suite", "handshake failure",
		"insufficient security", "no supported versions", "server selected unsupported",
		"unsupported protocol version",
	} {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}
