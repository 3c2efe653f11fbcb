package xtls

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
)

// Fingerprint is the SHA-256 digest of a certificate's DER-encoded
// SubjectPublicKeyInfo.
// It identifies a public key, not a certificate: a certificate renewed with the
// same key keeps its fingerprint.
// Fingerprints are comparable with ==; the zero Fingerprint is never the
// fingerprint of a key.
type Fingerprint [sha256.Size]byte

// SPKIFingerprint returns the fingerprint of the public key in cert.
func SPKIFingerprint(cert *x509.Certificate) Fingerprint {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// String returns the fingerprint in the form meant for comparison out of band
// (read aloud, or side by side on two screens): 64 uppercase hexadecimal
// digits in 16 groups of 4 separated by single spaces.
func (f Fingerprint) String() string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, 2*len(f)+len(f)/2-1)
	for i, c := range f {
		if i > 0 && i%2 == 0 {
			b = append(b, ' ')
		}
		b = append(b, digits[c>>4], digits[c&0x0f])
	}
	return string(b)
}

// ParseFingerprint parses a fingerprint written as 64 hexadecimal digits, in
// upper or lower case, in one of three forms:
// grouped and separated by white space, as String writes it
// ("0A1B 2C3D ..."; any grouping is accepted);
// plain ("0a1b2c3d...");
// or as 32 two-digit bytes separated by colons ("0A:1B:2C:3D:...").
// Leading and trailing white space is ignored.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	t := strings.TrimSpace(s)
	var digits string
	switch {
	case strings.Contains(t, ":"):
		parts := strings.Split(t, ":")
		if len(parts) != len(f) {
			return Fingerprint{}, fingerprintError(s, fmt.Sprintf("%d colon-separated bytes, want %d", len(parts), len(f)))
		}
		for _, p := range parts {
			if len(p) != 2 {
				return Fingerprint{}, fingerprintError(s, "colon-separated bytes must have two digits each")
			}
		}
		digits = strings.Join(parts, "")
	case strings.ContainsFunc(t, unicode.IsSpace):
		digits = strings.Join(strings.Fields(t), "")
	default:
		digits = t
	}
	if len(digits) != hex.EncodedLen(len(f)) {
		return Fingerprint{}, fingerprintError(s, fmt.Sprintf("%d hexadecimal digits, want %d", len(digits), hex.EncodedLen(len(f))))
	}
	if _, err := hex.Decode(f[:], []byte(digits)); err != nil {
		return Fingerprint{}, fingerprintError(s, err.Error())
	}
	return f, nil
}

func fingerprintError(s, why string) error {
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return fmt.Errorf("xtls: invalid fingerprint %q: %s", s, why)
}

// MarshalText implements encoding.TextMarshaler.
// It writes the compact machine form: 64 lowercase hexadecimal digits without
// separators.
// Use String for the form shown to users.
func (f Fingerprint) MarshalText() ([]byte, error) {
	return hex.AppendEncode(nil, f[:]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
// It accepts every form ParseFingerprint accepts.
func (f *Fingerprint) UnmarshalText(text []byte) error {
	p, err := ParseFingerprint(string(text))
	if err != nil {
		return err
	}
	*f = p
	return nil
}
