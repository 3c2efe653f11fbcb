package xtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	mx509 "mellium.im/xmpp/x509"
)

// oidUPN is the Microsoft user principal name otherName.
var oidUPN = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 311, 20, 2, 3}

// The GeneralNames below are encoded by hand, independently of cert.go.

// rawOtherName returns an otherName GeneralName with the given type-id and
// DER-encoded value.
func rawOtherName(t *testing.T, typeID asn1.ObjectIdentifier, value []byte) asn1.RawValue {
	t.Helper()
	oid, err := asn1.Marshal(typeID)
	require.NoError(t, err)
	explicit, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: value})
	require.NoError(t, err)
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, explicit...)}
}

// utf8String returns the DER of a UTF8String holding s (which need not be
// valid UTF-8).
func utf8String(t *testing.T, s string) []byte {
	t.Helper()
	b, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte(s)})
	require.NoError(t, err)
	return b
}

func xmppAddrName(t *testing.T, addr string) asn1.RawValue {
	return rawOtherName(t, oidXMPPAddr, utf8String(t, addr))
}

func upnName(t *testing.T, upn string) asn1.RawValue {
	return rawOtherName(t, oidUPN, utf8String(t, upn))
}

func dnsName(name string) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(name)}
}

// san returns the DER of a subjectAltName holding names.
func san(t *testing.T, names ...asn1.RawValue) []byte {
	t.Helper()
	b, err := asn1.Marshal(names)
	require.NoError(t, err)
	return b
}

// sanCert returns a certificate with only a subjectAltName extension of the
// given DER value, enough for XMPPAddrs.
func sanCert(value ...[]byte) *x509.Certificate {
	c := &x509.Certificate{}
	for _, v := range value {
		c.Extensions = append(c.Extensions, pkix.Extension{Id: oidSubjectAltName, Value: v})
	}
	return c
}

// leafSpec describes a certificate made by issueLeaf.
type leafSpec struct {
	cn       string
	names    []asn1.RawValue // the subjectAltName, if any
	critical bool            // whether the subjectAltName is critical
	eku      []x509.ExtKeyUsage
	extra    []pkix.Extension
}

// issueLeaf makes a certificate following spec, signed by ca, bypassing
// GenerateCertificate so that the subjectAltName can be anything.
func issueLeaf(t *testing.T, ca tls.Certificate, spec leafSpec) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	eku := spec.eku
	if eku == nil {
		eku = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(42),
		Subject:               pkix.Name{CommonName: spec.cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		ExtraExtensions:       spec.extra,
	}
	if spec.names != nil {
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{
			Id: oidSubjectAltName, Critical: spec.critical, Value: san(t, spec.names...),
		})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, &key.PublicKey, ca.PrivateKey.(crypto.Signer))
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

func newCA(t *testing.T, name string, opts ...CertOption) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	ca, err := GenerateCA(name, opts...)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)
	return ca, pool
}

func TestXMPPAddrs(t *testing.T) {
	tests := [...]struct {
		cert    *x509.Certificate
		want    []string
		wantErr bool
	}{
		0: {cert: sanCert(san(t, xmppAddrName(t, "alice@example.net"))), want: []string{"alice@example.net"}},
		1: {cert: sanCert(san(t, upnName(t, "mallory@example.net"), xmppAddrName(t, "alice@example.net"))), want: []string{"alice@example.net"}},
		2: {cert: sanCert(san(t, xmppAddrName(t, "alice@example.net"), upnName(t, "mallory@example.net"))), want: []string{"alice@example.net"}},
		3: {cert: sanCert(san(t, dnsName("example.net"))), want: nil},
		4: {cert: sanCert(san(t, xmppAddrName(t, "a@example.net"), dnsName("example.net"), xmppAddrName(t, "b@example.net/r"))), want: []string{"a@example.net", "b@example.net/r"}},
		5: {cert: &x509.Certificate{}, want: nil},
		// Another otherName may hold anything.
		6: {cert: sanCert(san(t, rawOtherName(t, asn1.ObjectIdentifier{1, 2, 3}, []byte{0x04, 0x01, 0xff}), xmppAddrName(t, "alice@example.net"))), want: []string{"alice@example.net"}},
		// An xmppAddr that is not a UTF8String.
		7: {cert: sanCert(san(t, rawOtherName(t, oidXMPPAddr, []byte{0x16, 0x01, 'a'}))), wantErr: true},
		// Invalid UTF-8.
		8: {cert: sanCert(san(t, xmppAddrName(t, "alice\xff@example.net"))), wantErr: true},
		// Two values in an xmppAddr.
		9: {cert: sanCert(san(t, rawOtherName(t, oidXMPPAddr, append(utf8String(t, "a@example.net"), utf8String(t, "b@example.net")...)))), wantErr: true},
		// A value not wrapped in [0] EXPLICIT.
		10: {cert: sanCert(san(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
			Bytes: append(must(asn1.Marshal(oidXMPPAddr)), utf8String(t, "alice@example.net")...)})), wantErr: true},
		// Trailing data after the value.
		11: {cert: sanCert(san(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
			Bytes: append(xmppAddrName(t, "alice@example.net").Bytes, 0x05, 0x00)})), wantErr: true},
		// A primitive otherName.
		12: {cert: sanCert(san(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, Bytes: []byte("alice")})), wantErr: true},
		// Trailing data after the SEQUENCE.
		13: {cert: sanCert(append(san(t, xmppAddrName(t, "alice@example.net")), 0x00)), wantErr: true},
		// Not a SEQUENCE.
		14: {cert: sanCert(must(asn1.Marshal([]byte("alice@example.net")))), wantErr: true},
		// An empty SEQUENCE.
		15: {cert: sanCert([]byte{0x30, 0x00}), wantErr: true},
		// Truncated.
		16: {cert: sanCert(san(t, xmppAddrName(t, "alice@example.net"))[:10]), wantErr: true},
		// A universal element among GeneralNames.
		17: {cert: sanCert(san(t, xmppAddrName(t, "alice@example.net"), asn1.RawValue{Tag: asn1.TagUTF8String, Bytes: []byte("x")})), wantErr: true},
		// Two subjectAltName extensions.
		18: {cert: sanCert(san(t, xmppAddrName(t, "alice@example.net")), san(t, xmppAddrName(t, "bob@example.net"))), wantErr: true},
		19: {cert: sanCert(nil), wantErr: true},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			got, err := XMPPAddrs(tc.cert)
			if tc.wantErr {
				require.ErrorContains(t, err, "xtls:")
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestXMPPAddrsChecksOID shows the mellium.im/xmpp/x509 caveat that
// XMPPAddrs avoids: a Microsoft UPN is taken for an XMPP address there.
func TestXMPPAddrsChecksOID(t *testing.T) {
	ca, _ := newCA(t, "CA")
	cert := issueLeaf(t, ca, leafSpec{names: []asn1.RawValue{upnName(t, "mallory@example.net"), xmppAddrName(t, "alice@example.net")}})

	mc, err := mx509.FromCertificate(cert)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"alice@example.net", "mallory@example.net"}, mc.XMPPAddresses)

	addrs, err := XMPPAddrs(cert)
	require.NoError(t, err)
	require.Equal(t, []string{"alice@example.net"}, addrs)
}

func TestCheckIdentity(t *testing.T) {
	ca, _ := newCA(t, "CA")
	issue := func(spec leafSpec) *x509.Certificate { return issueLeaf(t, ca, spec) }
	alice := issue(leafSpec{names: []asn1.RawValue{xmppAddrName(t, "alice@example.net")}})
	upnAndAlice := issue(leafSpec{names: []asn1.RawValue{upnName(t, "mallory@example.net"), xmppAddrName(t, "alice@example.net")}})
	generated, err := GenerateCertificate(jid.MustParse("example.net"))
	require.NoError(t, err)

	tests := [...]struct {
		cert      *x509.Certificate
		peer      string
		wantNames []string // nil when the identity must match
	}{
		0: {cert: alice, peer: "alice@example.net/phone"},
		1: {cert: alice, peer: "alice@example.net"},
		2: {cert: alice, peer: "bob@example.net/phone", wantNames: []string{"alice@example.net"}},
		3: {cert: alice, peer: "example.net", wantNames: []string{"alice@example.net"}},
		// The xmppAddr is normalized before comparison.
		4: {cert: issue(leafSpec{names: []asn1.RawValue{xmppAddrName(t, "Alice@EXAMPLE.net.")}}), peer: "alice@example.net"},
		// A UPN never names anyone.
		5: {cert: upnAndAlice, peer: "alice@example.net/work"},
		6: {cert: upnAndAlice, peer: "mallory@example.net/x", wantNames: []string{"alice@example.net"}},
		// An xmppAddr with a resourcepart never matches.
		7: {cert: issue(leafSpec{names: []asn1.RawValue{xmppAddrName(t, "alice@example.net/phone")}}), peer: "alice@example.net/phone", wantNames: []string{"alice@example.net/phone"}},
		// An xmppAddr that is not a JID is skipped.
		8: {cert: issue(leafSpec{names: []asn1.RawValue{xmppAddrName(t, "@@"), xmppAddrName(t, "alice@example.net")}}), peer: "alice@example.net"},
		// A domain JID matches a dNSName...
		9:  {cert: issue(leafSpec{names: []asn1.RawValue{dnsName("example.net")}}), peer: "example.net"},
		10: {cert: issue(leafSpec{names: []asn1.RawValue{dnsName("EXAMPLE.NET.")}}), peer: "example.net/res"},
		11: {cert: issue(leafSpec{names: []asn1.RawValue{dnsName("xn--mnchen-3ya.example")}}), peer: "münchen.example"},
		12: {cert: generated.Leaf, peer: "example.net"},
		// ... or an xmppAddr.
		13: {cert: issue(leafSpec{names: []asn1.RawValue{xmppAddrName(t, "example.net")}}), peer: "example.net"},
		// A dNSName names no user.
		14: {cert: generated.Leaf, peer: "alice@example.net", wantNames: []string{"example.net", "example.net"}},
		// No subdomains, no wildcards.
		15: {cert: generated.Leaf, peer: "conference.example.net", wantNames: []string{"example.net", "example.net"}},
		16: {cert: issue(leafSpec{names: []asn1.RawValue{dnsName("*.example.net")}}), peer: "conference.example.net", wantNames: []string{"*.example.net"}},
		// The common name is never used.
		17: {cert: issue(leafSpec{cn: "alice@example.net"}), peer: "alice@example.net", wantNames: []string{}},
		18: {cert: issue(leafSpec{cn: "example.net"}), peer: "example.net", wantNames: []string{}},
		// A malformed subjectAltName.
		19: {cert: sanCert(san(t, rawOtherName(t, oidXMPPAddr, []byte{0x16, 0x01, 'a'}))), peer: "alice@example.net", wantNames: []string{}},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			peer := jid.MustParse(tc.peer)
			err := checkIdentity(tc.cert, peer)
			if tc.wantNames == nil {
				require.NoError(t, err)
				return
			}
			var idErr *IdentityError
			require.ErrorAs(t, err, &idErr)
			require.True(t, idErr.Peer.Equal(peer), "Peer is %s", idErr.Peer)
			if len(tc.wantNames) == 0 {
				require.Empty(t, idErr.Names)
			} else {
				require.Equal(t, tc.wantNames, idErr.Names)
			}
			require.NotEmpty(t, idErr.Reason)
			require.NotContains(t, idErr.Error(), "xtls: xtls:")
		})
	}
}

func TestIdentityErrorMessage(t *testing.T) {
	err := &IdentityError{
		Peer:   jid.MustParse("bob@example.net/phone"),
		Names:  []string{"alice@example.net", "example.net"},
		Reason: "no xmppAddr names bob@example.net",
	}
	require.Equal(t, `xtls: certificate is not valid for bob@example.net/phone: no xmppAddr names bob@example.net (the certificate names "alice@example.net", "example.net")`, err.Error())
	err.Names = nil
	require.Equal(t, `xtls: certificate is not valid for bob@example.net/phone: no xmppAddr names bob@example.net (the certificate names no XMPP address)`, err.Error())
}

// TestVerifyChainCriticalXMPPAddrOnlySAN proves that verifyChain accepts what
// crypto/x509 alone refuses: a critical subjectAltName holding only an
// xmppAddr, with an empty subject, as RFC 5280 requires.
func TestVerifyChainCriticalXMPPAddrOnlySAN(t *testing.T) {
	ca, roots := newCA(t, "Example Corp CA")
	issued, err := IssueCertificate(ca, jid.MustParse("alice@example.net"), WithCriticalSAN())
	require.NoError(t, err)
	emptySubject := issueLeaf(t, ca, leafSpec{
		names:    []asn1.RawValue{xmppAddrName(t, "alice@example.net")},
		critical: true,
	})

	for i, leaf := range [...]*x509.Certificate{0: issued.Leaf, 1: emptySubject} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			require.Equal(t, []asn1.ObjectIdentifier{oidSubjectAltName}, leaf.UnhandledCriticalExtensions)

			// Plain crypto/x509 fails on it.
			_, err := leaf.Verify(x509.VerifyOptions{
				Roots:     roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
			})
			require.ErrorAs(t, err, new(x509.UnhandledCriticalExtension))

			require.NoError(t, checkIdentity(leaf, jid.MustParse("alice@example.net/phone")))
			chains, err := verifyChain([]*x509.Certificate{leaf}, roots, time.Now())
			require.NoError(t, err)
			require.Len(t, chains, 1)
			require.Len(t, chains[0], 2)
			require.Same(t, leaf, chains[0][0])
			require.True(t, chains[0][1].Equal(ca.Leaf))

			// The caller's certificate is left alone.
			require.Equal(t, []asn1.ObjectIdentifier{oidSubjectAltName}, leaf.UnhandledCriticalExtensions)

			// The identity check still applies.
			var idErr *IdentityError
			require.ErrorAs(t, checkIdentity(leaf, jid.MustParse("mallory@example.net")), &idErr)
		})
	}
}

// TestVerifyChainOtherCriticalExtension checks that verifyChain ignores only
// the subjectAltName among unhandled critical extensions.
func TestVerifyChainOtherCriticalExtension(t *testing.T) {
	ca, roots := newCA(t, "CA")
	leaf := issueLeaf(t, ca, leafSpec{
		names:    []asn1.RawValue{xmppAddrName(t, "alice@example.net")},
		critical: true,
		extra:    []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{0x05, 0x00}}},
	})
	require.Len(t, leaf.UnhandledCriticalExtensions, 2)
	_, err := verifyChain([]*x509.Certificate{leaf}, roots, time.Now())
	var chainErr *ChainError
	require.ErrorAs(t, err, &chainErr)
	require.ErrorAs(t, err, new(x509.UnhandledCriticalExtension))
	require.Len(t, leaf.UnhandledCriticalExtensions, 2)
}

func TestVerifyChain(t *testing.T) {
	root, roots := newCA(t, "Root CA")
	inter, err := GenerateCA("Intermediate CA", issuedBy(root), WithEd25519())
	require.NoError(t, err)
	require.Len(t, inter.Certificate, 2)
	other, otherRoots := newCA(t, "Other CA")
	shortCA, shortRoots := newCA(t, "Short-lived CA", WithValidity(time.Hour))

	alice := jid.MustParse("alice@example.net")
	issue := func(ca tls.Certificate, opts ...CertOption) []*x509.Certificate {
		c, err := IssueCertificate(ca, alice, opts...)
		require.NoError(t, err)
		var certs []*x509.Certificate
		for _, der := range c.Certificate {
			cert, err := x509.ParseCertificate(der)
			require.NoError(t, err)
			certs = append(certs, cert)
		}
		return certs
	}
	selfSigned, err := GenerateCertificate(alice)
	require.NoError(t, err)
	selfRoots := x509.NewCertPool()
	selfRoots.AddCert(selfSigned.Leaf)

	now := time.Now()
	tests := [...]struct {
		certs   []*x509.Certificate
		roots   *x509.CertPool
		now     time.Time
		wantLen int   // length of the chain, when verification succeeds
		wantErr error // a pointer to the error type expected, for errors.As
	}{
		0: {certs: issue(root), roots: roots, now: now, wantLen: 2},
		1: {certs: issue(inter), roots: roots, now: now, wantLen: 3},
		// The intermediate must be presented.
		2: {certs: issue(inter)[:1], roots: roots, now: now, wantErr: &x509.UnknownAuthorityError{}},
		// Another CA.
		3: {certs: issue(root), roots: otherRoots, now: now, wantErr: &x509.UnknownAuthorityError{}},
		4: {certs: issue(other), roots: roots, now: now, wantErr: &x509.UnknownAuthorityError{}},
		// A self-signed certificate is trusted only if it is a root itself.
		5: {certs: []*x509.Certificate{selfSigned.Leaf}, roots: roots, now: now, wantErr: &x509.UnknownAuthorityError{}},
		6: {certs: []*x509.Certificate{selfSigned.Leaf}, roots: selfRoots, now: now, wantLen: 1},
		// No roots, no trust: never the system roots.
		7: {certs: issue(root), roots: nil, now: now, wantErr: &ChainError{}},
		8: {certs: nil, roots: roots, now: now, wantErr: &ChainError{}},
		// An expired leaf.
		9:  {certs: issue(root), roots: roots, now: now.Add(2 * defaultValidity), wantErr: &CertificateExpiredError{}},
		10: {certs: issue(root), roots: roots, now: now.Add(-2 * time.Hour), wantErr: &CertificateExpiredError{}},
		// An expired CA.
		11: {certs: issue(shortCA), roots: shortRoots, now: now.Add(2 * time.Hour), wantErr: &x509.CertificateInvalidError{}},
		// A leaf not meant for TLS.
		12: {certs: []*x509.Certificate{issueLeaf(t, root, leafSpec{
			names: []asn1.RawValue{xmppAddrName(t, "alice@example.net")},
			eku:   []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		})}, roots: roots, now: now, wantErr: &x509.CertificateInvalidError{}},
		// Either TLS usage is enough.
		13: {certs: []*x509.Certificate{issueLeaf(t, root, leafSpec{
			names: []asn1.RawValue{xmppAddrName(t, "alice@example.net")},
			eku:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})}, roots: roots, now: now, wantLen: 2},
		14: {certs: []*x509.Certificate{issueLeaf(t, root, leafSpec{
			names: []asn1.RawValue{xmppAddrName(t, "alice@example.net")},
			eku:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})}, roots: roots, now: now, wantLen: 2},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			chains, err := verifyChain(tc.certs, tc.roots, tc.now)
			if tc.wantErr == nil {
				require.NoError(t, err)
				require.NotEmpty(t, chains)
				require.Len(t, chains[0], tc.wantLen)
				require.Same(t, tc.certs[0], chains[0][0])
				return
			}
			require.Error(t, err)
			require.Nil(t, chains)
			switch want := tc.wantErr.(type) {
			case *CertificateExpiredError:
				require.ErrorAs(t, err, &want)
				require.Equal(t, tc.now, want.Now)
			case *ChainError:
				require.ErrorAs(t, err, &want)
			case *x509.UnknownAuthorityError:
				var chainErr *ChainError
				require.ErrorAs(t, err, &chainErr)
				require.ErrorAs(t, err, want)
			case *x509.CertificateInvalidError:
				var chainErr *ChainError
				require.ErrorAs(t, err, &chainErr)
				require.ErrorAs(t, err, want)
			default:
				t.Fatalf("unexpected wantErr %T", want)
			}
		})
	}
}

func TestCheckValidity(t *testing.T) {
	c, err := GenerateCertificate(jid.MustParse("alice@example.net"), WithValidity(24*time.Hour))
	require.NoError(t, err)
	cert := c.Leaf
	tests := [...]struct {
		now     time.Time
		wantErr string
	}{
		0: {now: time.Now()},
		1: {now: cert.NotBefore},
		2: {now: cert.NotAfter},
		3: {now: cert.NotBefore.Add(-time.Nanosecond), wantErr: "xtls: certificate is not yet valid"},
		4: {now: cert.NotAfter.Add(time.Nanosecond), wantErr: "xtls: certificate has expired"},
		5: {now: cert.NotAfter.Add(defaultValidity), wantErr: "xtls: certificate has expired"},
	}
	for i, tc := range tests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			err := checkValidity(cert, tc.now)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			var expErr *CertificateExpiredError
			require.ErrorAs(t, err, &expErr)
			require.Equal(t, CertificateExpiredError{NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Now: tc.now}, *expErr)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestVerifyChainDoesNotTouchIntermediates(t *testing.T) {
	root, roots := newCA(t, "Root CA")
	inter, err := GenerateCA("Intermediate CA", issuedBy(root))
	require.NoError(t, err)
	c, err := IssueCertificate(inter, jid.MustParse("alice@example.net"), WithCriticalSAN())
	require.NoError(t, err)
	certs := []*x509.Certificate{c.Leaf, inter.Leaf}
	before := slices.Clone(certs)
	_, err = verifyChain(certs, roots, time.Now())
	require.NoError(t, err)
	require.Equal(t, before, certs)
}
