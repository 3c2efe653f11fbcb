package stanza

import (
	"encoding/xml"
	"strconv"
)

// scanAttrs collects the values of the named, unqualified attributes of
// start. Unknown attributes and namespace declarations are ignored, as XMPP
// extensions ignore what they do not know; a known attribute given twice is an
// error. found[i] reports whether names[i] was present.
func scanAttrs(elem string, start *xml.StartElement, names []string, vals []string, found []bool) error {
	for _, a := range start.Attr {
		if a.Name.Space != "" {
			continue
		}
		for i, n := range names {
			if a.Name.Local != n {
				continue
			}
			if found[i] {
				return attrErr(elem, n, a.Value, ErrDuplicateAttr)
			}
			found[i] = true
			vals[i] = a.Value
		}
	}
	return nil
}

// parseDecimal parses a number written as decimal digits only: no sign, no
// spaces, no other characters. Values above max are ErrOutOfRange.
func parseDecimal(elem, attr, s string, max uint64) (uint64, error) {
	if s == "" {
		return 0, attrErr(elem, attr, s, ErrSyntax)
	}
	var n uint64
	over := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, attrErr(elem, attr, s, ErrSyntax)
		}
		if n > (max-uint64(c-'0'))/10 {
			over = true
			continue
		}
		n = n*10 + uint64(c-'0')
	}
	if over || n > max {
		return 0, attrErr(elem, attr, s, ErrOutOfRange)
	}
	return n, nil
}

func inRange(elem, attr string, n, lo, hi uint64) error {
	if n < lo || n > hi {
		return attrErr(elem, attr, strconv.FormatUint(n, 10), ErrOutOfRange)
	}
	return nil
}

// ValidSID reports whether s is a valid sid: 1 to MaxSIDLen characters from
// [A-Za-z0-9_-].
func ValidSID(s string) bool {
	if len(s) == 0 || len(s) > MaxSIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func checkSID(elem, s string) error {
	if !ValidSID(s) {
		return attrErr(elem, "sid", s, ErrSyntax)
	}
	return nil
}

// conditions are the stanza error conditions of RFC 6120 §8.3.3, the values a
// close element's error attribute may take.
var conditions = map[string]bool{
	"bad-request": true, "conflict": true, "feature-not-implemented": true,
	"forbidden": true, "gone": true, "internal-server-error": true,
	"item-not-found": true, "jid-malformed": true, "not-acceptable": true,
	"not-allowed": true, "not-authorized": true, "policy-violation": true,
	"recipient-unavailable": true, "redirect": true,
	"registration-required": true, "remote-server-not-found": true,
	"remote-server-timeout": true, "resource-constraint": true,
	"service-unavailable": true, "subscription-required": true,
	"undefined-condition": true, "unexpected-request": true,
}

// ValidCondition reports whether s is one of the stanza error conditions of
// RFC 6120 §8.3.3.
func ValidCondition(s string) bool { return conditions[s] }

// Reasons an abort may give (Close.Reason). A receiver shows an unknown
// reason as it came; these it can put in words.
const (
	// ReasonApplication: the application aborted the tunnel.
	ReasonApplication = "application"
	// ReasonShutdown: the sender's program is shutting down (a signal, a
	// user quitting).
	ReasonShutdown = "shutdown"
	// ReasonNotTrusted: the sender does not trust the receiver's
	// certificate.
	ReasonNotTrusted = "not-trusted"
	// ReasonPairingFailed: pairing with a short code failed.
	ReasonPairingFailed = "pairing-failed"
	// ReasonTimeout: the sender gave up waiting (a handshake, a close).
	ReasonTimeout = "timeout"
	// ReasonPeerGone: the sender stopped hearing from the receiver.
	ReasonPeerGone = "peer-gone"
)

// MaxReasonLen is the longest reason.
const MaxReasonLen = 32

// ValidReason reports whether s is a well-formed reason: 1 to MaxReasonLen
// characters from [a-z0-9-].
func ValidReason(s string) bool {
	if len(s) == 0 || len(s) > MaxReasonLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
