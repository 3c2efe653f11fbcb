package xtls

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mellium.im/xmpp/jid"
)

// XMPPAddrs returns the XMPP addresses that cert names: the values of the
// otherNames in its subjectAltName extension whose type-id is id-on-xmppAddr
// (1.3.6.1.5.5.7.8.5, RFC 6120, section 13.7.1.4), as they are written in the
// certificate, unnormalized.
// Other otherNames, such as a Microsoft user principal name, and other kinds of
// names are ignored.
// A certificate without subjectAltName names no address.
//
// Unlike mellium.im/xmpp/x509, which takes any otherName holding a UTF8String
// for an XMPP address, XMPPAddrs walks the extension itself and checks the
// type-id.
// A subjectAltName that is not valid DER, or an xmppAddr whose value is not a
// valid UTF8String, is an error.
func XMPPAddrs(cert *x509.Certificate) ([]string, error) {
	var (
		addrs []string
		seen  bool
	)
	for _, ext := range cert.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		if seen {
			return nil, errors.New("xtls: certificate has more than one subjectAltName extension")
		}
		seen = true
		var err error
		if addrs, err = parseXMPPAddrs(ext.Value); err != nil {
			return nil, fmt.Errorf("xtls: malformed subjectAltName: %w", err)
		}
	}
	return addrs, nil
}

// parseXMPPAddrs walks a DER-encoded subjectAltName (RFC 5280, section
// 4.2.1.6):
//
//	SubjectAltName ::= GeneralNames
//	GeneralNames ::= SEQUENCE SIZE (1..MAX) OF GeneralName
//	GeneralName ::= CHOICE {
//	     otherName                 [0] OtherName,  -- IMPLICIT
//	     ...                       [1] to [8] }
//	OtherName ::= SEQUENCE {
//	     type-id    OBJECT IDENTIFIER,
//	     value      [0] EXPLICIT ANY DEFINED BY type-id }
//
// and returns the UTF8String values of the otherNames of type id-on-xmppAddr.
func parseXMPPAddrs(der []byte) ([]string, error) {
	var seq asn1.RawValue
	rest, err := asn1.Unmarshal(der, &seq)
	switch {
	case err != nil:
		return nil, err
	case len(rest) != 0:
		return nil, errors.New("trailing data")
	case seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound:
		return nil, errors.New("not a SEQUENCE")
	case len(seq.Bytes) == 0:
		return nil, errors.New("no names")
	}
	var addrs []string
	for rest = seq.Bytes; len(rest) > 0; {
		var name asn1.RawValue
		if rest, err = asn1.Unmarshal(rest, &name); err != nil {
			return nil, err
		}
		if name.Class != asn1.ClassContextSpecific {
			return nil, fmt.Errorf("GeneralName of class %d", name.Class)
		}
		if name.Tag != 0 {
			continue // not an otherName
		}
		if !name.IsCompound {
			return nil, errors.New("primitive otherName")
		}
		var typeID asn1.ObjectIdentifier
		r, err := asn1.Unmarshal(name.Bytes, &typeID)
		if err != nil {
			return nil, fmt.Errorf("otherName type-id: %w", err)
		}
		var value asn1.RawValue
		if r, err = asn1.Unmarshal(r, &value); err != nil {
			return nil, fmt.Errorf("otherName value: %w", err)
		}
		if len(r) != 0 {
			return nil, errors.New("trailing data in otherName")
		}
		if value.Class != asn1.ClassContextSpecific || value.Tag != 0 || !value.IsCompound {
			return nil, errors.New("otherName value is not [0] EXPLICIT")
		}
		if !typeID.Equal(oidXMPPAddr) {
			continue
		}
		var s asn1.RawValue
		if r, err = asn1.Unmarshal(value.Bytes, &s); err != nil {
			return nil, fmt.Errorf("xmppAddr: %w", err)
		}
		if len(r) != 0 {
			return nil, errors.New("trailing data in xmppAddr")
		}
		if s.Class != asn1.ClassUniversal || s.Tag != asn1.TagUTF8String || s.IsCompound {
			return nil, fmt.Errorf("xmppAddr of class %d and tag %d, want UTF8String", s.Class, s.Tag)
		}
		if !utf8.Valid(s.Bytes) {
			return nil, errors.New("xmppAddr is not valid UTF-8")
		}
		addrs = append(addrs, string(s.Bytes))
	}
	return addrs, nil
}

// IdentityError is returned when a peer's certificate does not name the peer.
type IdentityError struct {
	// Peer is the JID the certificate was checked against.
	Peer jid.JID
	// Names is what the certificate names: its xmppAddr values, then its
	// dNSName values, as written in the certificate.
	Names []string
	// Reason says what was wrong.
	Reason string
}

// Error implements error.
func (e *IdentityError) Error() string {
	var b strings.Builder
	b.WriteString("xtls: certificate is not valid for ")
	b.WriteString(e.Peer.String())
	b.WriteString(": ")
	b.WriteString(e.Reason)
	if len(e.Names) == 0 {
		b.WriteString(" (the certificate names no XMPP address)")
		return b.String()
	}
	b.WriteString(" (the certificate names ")
	for i, n := range e.Names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(n))
	}
	b.WriteString(")")
	return b.String()
}

// checkIdentity checks that cert names the bare JID of peer.
//
// It matches if an xmppAddr of cert, parsed and normalized as a JID, equals
// the bare JID of peer; an xmppAddr with a resourcepart never matches.
// If peer has no localpart (a server or service), a dNSName equal to its
// domainpart also matches; the comparison is exact after normalization
// (case, trailing dot, A-labels against U-labels), and wildcards are not
// accepted.
// The subject common name is never used.
//
// On failure it returns an *IdentityError.
func checkIdentity(cert *x509.Certificate, peer jid.JID) error {
	want := peer.Bare()
	addrs, err := XMPPAddrs(cert)
	if err != nil {
		return &IdentityError{Peer: peer, Names: cert.DNSNames, Reason: strings.TrimPrefix(err.Error(), "xtls: ")}
	}
	for _, a := range addrs {
		j, err := jid.Parse(a)
		if err != nil || j.Resourcepart() != "" {
			continue
		}
		if j.Equal(want) {
			return nil
		}
	}
	if want.Localpart() == "" && want.Domainpart() != "" {
		for _, name := range cert.DNSNames {
			if dnsNameMatches(name, want) {
				return nil
			}
		}
	}
	names := slices.Concat(addrs, cert.DNSNames)
	reason := "no xmppAddr names " + want.String()
	if want.Localpart() == "" {
		reason = "neither an xmppAddr nor a dNSName names " + want.String()
	}
	return &IdentityError{Peer: peer, Names: names, Reason: reason}
}

// dnsNameMatches reports whether the dNSName name is the domain of the domain
// JID domain.
func dnsNameMatches(name string, domain jid.JID) bool {
	if name == "" || strings.Contains(name, "*") || net.ParseIP(name) != nil {
		return false
	}
	j, err := jid.New("", name, "")
	return err == nil && j.Equal(domain)
}

// ChainError is returned when a certificate chain cannot be verified.
type ChainError struct {
	// Err is the reason, often an error of crypto/x509 such as
	// x509.UnknownAuthorityError or x509.CertificateInvalidError.
	Err error
}

// Error implements error.
func (e *ChainError) Error() string {
	return "xtls: certificate chain not trusted: " + e.Err.Error()
}

// Unwrap returns e.Err.
func (e *ChainError) Unwrap() error { return e.Err }

// CertificateExpiredError is returned when a certificate is used outside its
// validity period: before NotBefore or after NotAfter.
type CertificateExpiredError struct {
	// NotBefore and NotAfter are the bounds of the certificate's validity
	// period.
	NotBefore, NotAfter time.Time
	// Now is the time the certificate was checked at.
	Now time.Time
}

// Error implements error.
func (e *CertificateExpiredError) Error() string {
	const layout = time.RFC3339
	if e.Now.Before(e.NotBefore) {
		return "xtls: certificate is not yet valid: current time " + e.Now.UTC().Format(layout) +
			" is before " + e.NotBefore.UTC().Format(layout)
	}
	return "xtls: certificate has expired: current time " + e.Now.UTC().Format(layout) +
		" is after " + e.NotAfter.UTC().Format(layout)
}

// checkValidity checks that now lies within the validity period of cert.
// It is the only time check made for a certificate trusted by its pinned key
// or on first use, which has no chain to verify.
// On failure it returns a *CertificateExpiredError.
func checkValidity(cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return &CertificateExpiredError{NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Now: now}
	}
	return nil
}

// verifyChain verifies certs[0] at time now as a certificate for TLS client or
// server authentication, chained through certs[1:] as intermediates to one of
// roots, and returns the verified chains.
// It does not check any name: the caller must have run checkIdentity on
// certs[0] first.
//
// That is why verifyChain may, and does, ignore a critical subjectAltName:
// crypto/x509 does not understand otherNames and reports a critical
// subjectAltName that holds only otherNames (typical of a user certificate
// with an empty subject) as an unhandled critical extension.
// verifyChain removes the subjectAltName from the UnhandledCriticalExtensions
// of a copy of certs[0]; the caller's certificate is not modified.
//
// roots must not be nil: verifyChain never falls back to the system roots.
// A leaf outside its validity period gives a *CertificateExpiredError; every
// other failure gives a *ChainError wrapping the error of crypto/x509.
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, &ChainError{Err: errors.New("no certificate")}
	}
	if roots == nil {
		return nil, &ChainError{Err: errors.New("no trusted roots")}
	}
	if err := checkValidity(certs[0], now); err != nil {
		return nil, err
	}
	leaf := *certs[0]
	leaf.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(leaf.UnhandledCriticalExtensions),
		func(id asn1.ObjectIdentifier) bool { return id.Equal(oidSubjectAltName) })
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, &ChainError{Err: err}
	}
	for _, chain := range chains {
		chain[0] = certs[0] // the caller's certificate, not our copy
	}
	return chains, nil
}
