package xtls_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
	mx509 "mellium.im/xmpp/x509"

	"github.com/xmppxtls/xtls/xtls"
)

var (
	oidSAN      = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidXMPPAddr = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
)

const year = 365 * 24 * time.Hour

// sanExtension returns the subjectAltName extension of cert and fails the test
// unless there is exactly one.
func sanExtension(t *testing.T, cert *x509.Certificate) (critical bool, value []byte) {
	t.Helper()
	n := 0
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidSAN) {
			n++
			critical, value = ext.Critical, ext.Value
		}
	}
	require.Equal(t, 1, n, "number of subjectAltName extensions")
	return critical, value
}

// decodedSAN is a subjectAltName decoded independently of the package: its
// xmppAddrs (checked to have the right OID and an explicit [0] UTF8String) and
// dNSNames.
type decodedSAN struct {
	xmppAddrs []string
	dnsNames  []string
}

func decodeSAN(t *testing.T, der []byte) decodedSAN {
	t.Helper()
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &names)
	require.NoError(t, err)
	require.Empty(t, rest)
	var d decodedSAN
	for _, n := range names {
		require.Equal(t, asn1.ClassContextSpecific, n.Class)
		switch n.Tag {
		case 0:
			var on struct {
				TypeID asn1.ObjectIdentifier
				Value  asn1.RawValue `asn1:"explicit,tag:0"`
			}
			rest, err := asn1.UnmarshalWithParams(n.FullBytes, &on, "tag:0")
			require.NoError(t, err)
			require.Empty(t, rest)
			require.True(t, on.TypeID.Equal(oidXMPPAddr), "otherName type-id %v", on.TypeID)
			// encoding/asn1 leaves the EXPLICIT wrapper on a RawValue.
			require.Equal(t, asn1.ClassContextSpecific, on.Value.Class)
			require.Equal(t, 0, on.Value.Tag)
			var value asn1.RawValue
			rest, err = asn1.Unmarshal(on.Value.Bytes, &value)
			require.NoError(t, err)
			require.Empty(t, rest)
			require.Equal(t, asn1.ClassUniversal, value.Class)
			require.Equal(t, asn1.TagUTF8String, value.Tag, "xmppAddr must be a UTF8String")
			d.xmppAddrs = append(d.xmppAddrs, string(value.Bytes))
		case 2:
			d.dnsNames = append(d.dnsNames, string(n.Bytes))
		default:
			t.Fatalf("unexpected GeneralName tag %d", n.Tag)
		}
	}
	return d
}

var generateCertificateTests = [...]struct {
	addr     string
	opts     []xtls.CertOption
	bare     string
	dns      []string
	ed25519  bool
	validity time.Duration
}{
	0: {addr: "alice@example.net", bare: "alice@example.net", validity: year},
	1: {addr: "alice@example.net/phone", opts: []xtls.CertOption{xtls.WithEd25519()}, bare: "alice@example.net", ed25519: true, validity: year},
	2: {addr: "Alice@EXAMPLE.net.", bare: "alice@example.net", validity: year},
	3: {addr: "example.net", bare: "example.net", dns: []string{"example.net"}, validity: year},
	4: {addr: "conference.example.net/room", opts: []xtls.CertOption{xtls.WithEd25519()}, bare: "conference.example.net", dns: []string{"conference.example.net"}, ed25519: true, validity: year},
	5: {addr: "münchen.example", bare: "münchen.example", dns: []string{"xn--mnchen-3ya.example"}, validity: year},
	6: {addr: "ßtraße@münchen.example", bare: "ßtraße@münchen.example", validity: year},
	7: {addr: "alice@example.net", opts: []xtls.CertOption{xtls.WithValidity(48 * time.Hour)}, bare: "alice@example.net", validity: 48 * time.Hour},
	8: {addr: "192.0.2.1", bare: "192.0.2.1", validity: year},
}

func TestGenerateCertificate(t *testing.T) {
	for i, tc := range generateCertificateTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			start := time.Now()
			c, err := xtls.GenerateCertificate(jid.MustParse(tc.addr), tc.opts...)
			require.NoError(t, err)
			require.Len(t, c.Certificate, 1, "a self-signed certificate has a chain of one")
			require.NotNil(t, c.Leaf)
			parsed, err := x509.ParseCertificate(c.Certificate[0])
			require.NoError(t, err)
			require.True(t, parsed.Equal(c.Leaf), "Leaf is Certificate[0]")
			leaf := c.Leaf

			require.Equal(t, tc.bare, leaf.Subject.CommonName)
			require.NoError(t, leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature), "self-signed")

			critical, san := sanExtension(t, leaf)
			require.False(t, critical, "subjectAltName must not be critical")
			require.Empty(t, leaf.UnhandledCriticalExtensions)
			d := decodeSAN(t, san)
			require.Equal(t, []string{tc.bare}, d.xmppAddrs)
			require.Equal(t, tc.dns, d.dnsNames)
			if tc.dns == nil {
				require.Empty(t, leaf.DNSNames)
			} else {
				require.Equal(t, tc.dns, leaf.DNSNames)
			}
			require.Empty(t, leaf.EmailAddresses)
			require.Empty(t, leaf.IPAddresses)
			require.Empty(t, leaf.URIs)

			addrs, err := xtls.XMPPAddrs(leaf)
			require.NoError(t, err)
			require.Equal(t, []string{tc.bare}, addrs)
			// mellium's parser, which does not check the OID, agrees here.
			mc, err := mx509.FromCertificate(leaf)
			require.NoError(t, err)
			require.Equal(t, []string{tc.bare}, mc.XMPPAddresses)

			require.Equal(t, 1, leaf.SerialNumber.Sign())
			require.LessOrEqual(t, leaf.SerialNumber.BitLen(), 128)
			require.Equal(t, x509.KeyUsageDigitalSignature, leaf.KeyUsage)
			require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}, leaf.ExtKeyUsage)
			require.True(t, leaf.BasicConstraintsValid)
			require.False(t, leaf.IsCA)

			// Certificate times have a resolution of one second.
			require.WithinRange(t, leaf.NotBefore,
				start.Add(-time.Hour).Truncate(time.Second), time.Now().Add(-time.Hour))
			require.WithinRange(t, leaf.NotAfter,
				start.Add(tc.validity).Truncate(time.Second), time.Now().Add(tc.validity))

			if tc.ed25519 {
				require.Equal(t, x509.Ed25519, leaf.PublicKeyAlgorithm)
				require.Equal(t, x509.PureEd25519, leaf.SignatureAlgorithm)
				key, ok := c.PrivateKey.(ed25519.PrivateKey)
				require.True(t, ok, "private key is %T", c.PrivateKey)
				require.True(t, key.Public().(ed25519.PublicKey).Equal(leaf.PublicKey))
			} else {
				require.Equal(t, x509.ECDSA, leaf.PublicKeyAlgorithm)
				require.Equal(t, x509.ECDSAWithSHA256, leaf.SignatureAlgorithm)
				key, ok := c.PrivateKey.(*ecdsa.PrivateKey)
				require.True(t, ok, "private key is %T", c.PrivateKey)
				require.Equal(t, elliptic.P256(), key.Curve)
				require.True(t, key.PublicKey.Equal(leaf.PublicKey))
			}
		})
	}
}

func TestGenerateCertificateIsFresh(t *testing.T) {
	alice := jid.MustParse("alice@example.net")
	c1, err := xtls.GenerateCertificate(alice)
	require.NoError(t, err)
	c2, err := xtls.GenerateCertificate(alice)
	require.NoError(t, err)
	require.NotEqual(t, 0, c1.Leaf.SerialNumber.Cmp(c2.Leaf.SerialNumber), "serial numbers must be random")
	require.NotEqual(t, xtls.SPKIFingerprint(c1.Leaf), xtls.SPKIFingerprint(c2.Leaf), "keys must be fresh")
}

func TestGenerateCertificateErrors(t *testing.T) {
	alice := jid.MustParse("alice@example.net")
	_, err := xtls.GenerateCertificate(jid.JID{})
	require.Error(t, err)
	_, err = xtls.GenerateCertificate(alice, xtls.WithValidity(0))
	require.Error(t, err)
	_, err = xtls.GenerateCertificate(alice, xtls.WithValidity(-time.Hour))
	require.Error(t, err)
	_, err = xtls.GenerateCA("CA", xtls.WithValidity(-time.Hour))
	require.Error(t, err)
}

func TestGenerateCertificateCriticalSAN(t *testing.T) {
	c, err := xtls.GenerateCertificate(jid.MustParse("alice@example.net"), xtls.WithCriticalSAN())
	require.NoError(t, err)
	critical, _ := sanExtension(t, c.Leaf)
	require.True(t, critical)
	// crypto/x509 understands no otherName, so it leaves a critical
	// subjectAltName holding only an xmppAddr unhandled.
	require.Len(t, c.Leaf.UnhandledCriticalExtensions, 1)
	require.True(t, c.Leaf.UnhandledCriticalExtensions[0].Equal(oidSAN))

	// With a dNSName in it, crypto/x509 handles it.
	c, err = xtls.GenerateCertificate(jid.MustParse("example.net"), xtls.WithCriticalSAN())
	require.NoError(t, err)
	critical, _ = sanExtension(t, c.Leaf)
	require.True(t, critical)
	require.Empty(t, c.Leaf.UnhandledCriticalExtensions)
}

func TestGenerateCA(t *testing.T) {
	for i, opts := range [...][]xtls.CertOption{0: nil, 1: {xtls.WithEd25519()}} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			start := time.Now()
			ca, err := xtls.GenerateCA("Example Corp CA", opts...)
			require.NoError(t, err)
			require.Len(t, ca.Certificate, 1)
			require.NotNil(t, ca.Leaf)
			require.Equal(t, "Example Corp CA", ca.Leaf.Subject.CommonName)
			require.True(t, ca.Leaf.BasicConstraintsValid)
			require.True(t, ca.Leaf.IsCA)
			require.Equal(t, x509.KeyUsageCertSign|x509.KeyUsageCRLSign, ca.Leaf.KeyUsage)
			require.NotEmpty(t, ca.Leaf.SubjectKeyId)
			require.NoError(t, ca.Leaf.CheckSignatureFrom(ca.Leaf))
			require.WithinRange(t, ca.Leaf.NotAfter,
				start.Add(10*year).Truncate(time.Second), time.Now().Add(10*year))
		})
	}
}

func TestIssueCertificate(t *testing.T) {
	for i, opts := range [...]struct{ ca, leaf []xtls.CertOption }{
		0: {},
		1: {ca: []xtls.CertOption{xtls.WithEd25519()}},
		2: {leaf: []xtls.CertOption{xtls.WithEd25519(), xtls.WithValidity(time.Hour)}},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			ca, err := xtls.GenerateCA("Example Corp CA", opts.ca...)
			require.NoError(t, err)
			c, err := xtls.IssueCertificate(ca, jid.MustParse("alice@example.net/work"), opts.leaf...)
			require.NoError(t, err)

			require.Len(t, c.Certificate, 2, "chain is [leaf, ca]")
			require.Equal(t, ca.Certificate[0], c.Certificate[1])
			require.NotNil(t, c.Leaf)
			require.Equal(t, c.Certificate[0], c.Leaf.Raw)
			require.Equal(t, "alice@example.net", c.Leaf.Subject.CommonName)
			require.Equal(t, "Example Corp CA", c.Leaf.Issuer.CommonName)
			require.NoError(t, c.Leaf.CheckSignatureFrom(ca.Leaf))
			require.Equal(t, ca.Leaf.SubjectKeyId, c.Leaf.AuthorityKeyId)
			require.False(t, c.Leaf.IsCA)
			addrs, err := xtls.XMPPAddrs(c.Leaf)
			require.NoError(t, err)
			require.Equal(t, []string{"alice@example.net"}, addrs)

			// The subjectAltName is not critical, so plain crypto/x509
			// verification works too.
			roots := x509.NewCertPool()
			roots.AddCert(ca.Leaf)
			_, err = c.Leaf.Verify(x509.VerifyOptions{
				Roots:     roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			})
			require.NoError(t, err)
		})
	}
}

func TestIssueCertificateIssuer(t *testing.T) {
	alice := jid.MustParse("alice@example.net")
	ca, err := xtls.GenerateCA("CA")
	require.NoError(t, err)

	// Leaf is optional in the issuer.
	noLeaf := ca
	noLeaf.Leaf = nil
	c, err := xtls.IssueCertificate(noLeaf, alice)
	require.NoError(t, err)
	require.NoError(t, c.Leaf.CheckSignatureFrom(ca.Leaf))

	// Only a CA may issue.
	notCA, err := xtls.GenerateCertificate(jid.MustParse("bob@example.net"))
	require.NoError(t, err)
	_, err = xtls.IssueCertificate(notCA, alice)
	require.ErrorContains(t, err, "not a CA")

	// The key must be the CA's.
	other, err := xtls.GenerateCA("other")
	require.NoError(t, err)
	wrongKey := ca
	wrongKey.PrivateKey = other.PrivateKey
	_, err = xtls.IssueCertificate(wrongKey, alice)
	require.Error(t, err)

	_, err = xtls.IssueCertificate(tls.Certificate{}, alice)
	require.Error(t, err)
}

func TestIssueCertificateKeepsOptions(t *testing.T) {
	ca, err := xtls.GenerateCA("CA")
	require.NoError(t, err)
	opts := make([]xtls.CertOption, 1, 4)
	opts[0] = xtls.WithEd25519()
	_, err = xtls.IssueCertificate(ca, jid.MustParse("alice@example.net"), opts...)
	require.NoError(t, err)
	// IssueCertificate must not have appended into the caller's array.
	require.Nil(t, opts[:2][1])
}

// filesIn returns the names in dir.
func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestCertificatePEM(t *testing.T) {
	ca, err := xtls.GenerateCA("CA", xtls.WithEd25519())
	require.NoError(t, err)
	p256, err := xtls.IssueCertificate(ca, jid.MustParse("alice@example.net"))
	require.NoError(t, err)
	ed, err := xtls.GenerateCertificate(jid.MustParse("example.net"), xtls.WithEd25519())
	require.NoError(t, err)

	for i, c := range [...]tls.Certificate{0: p256, 1: ed, 2: ca} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cert.pem")
			// An existing file with other permissions is replaced.
			require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))
			require.NoError(t, xtls.WriteCertificatePEM(path, c))

			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
			require.Equal(t, []string{"cert.pem"}, filesIn(t, dir), "no temporary file is left behind")

			data, err := os.ReadFile(path)
			require.NoError(t, err)
			var types []string
			for rest := data; ; {
				var b *pem.Block
				b, rest = pem.Decode(rest)
				if b == nil {
					require.Empty(t, strings.TrimSpace(string(rest)))
					break
				}
				types = append(types, b.Type)
			}
			want := append(make([]string, len(c.Certificate)), "PRIVATE KEY")
			for i := range c.Certificate {
				want[i] = "CERTIFICATE"
			}
			require.Equal(t, want, types)

			got, err := xtls.LoadCertificatePEM(path)
			require.NoError(t, err)
			require.Equal(t, c.Certificate, got.Certificate)
			require.NotNil(t, got.Leaf)
			require.True(t, got.Leaf.Equal(c.Leaf))
			type equaler interface{ Equal(crypto.PrivateKey) bool }
			require.True(t, got.PrivateKey.(equaler).Equal(c.PrivateKey))
		})
	}
}

func TestCertificatePEMErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := xtls.LoadCertificatePEM(filepath.Join(dir, "missing.pem"))
	require.ErrorIs(t, err, os.ErrNotExist)

	garbage := filepath.Join(dir, "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not PEM"), 0o600))
	_, err = xtls.LoadCertificatePEM(garbage)
	require.Error(t, err)

	require.Error(t, xtls.WriteCertificatePEM(filepath.Join(dir, "empty.pem"), tls.Certificate{}))
	require.Error(t, xtls.WriteCertificatePEM(filepath.Join(dir, "no", "such", "dir.pem"), tls.Certificate{Certificate: [][]byte{{1}}, PrivateKey: ed25519.NewKeyFromSeed(make([]byte, 32))}))
	require.Equal(t, []string{"garbage.pem"}, filesIn(t, dir))
}

func ExampleGenerateCertificate() {
	cert, err := xtls.GenerateCertificate(jid.MustParse("alice@example.net/phone"))
	if err != nil {
		log.Fatal(err)
	}
	addrs, err := xtls.XMPPAddrs(cert.Leaf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("subject:", cert.Leaf.Subject.CommonName)
	fmt.Println("xmppAddr:", addrs)
	fmt.Println("dNSName:", cert.Leaf.DNSNames)

	// The fingerprint users compare out of band.
	fp := xtls.SPKIFingerprint(cert.Leaf)
	fmt.Println("fingerprint groups:", len(strings.Fields(fp.String())))

	// Output:
	// subject: alice@example.net
	// xmppAddr: [alice@example.net]
	// dNSName: []
	// fingerprint groups: 16
}

func ExampleGenerateCertificate_service() {
	// A JID without localpart names a server or service; its certificate
	// also carries the domain as a dNSName.
	cert, err := xtls.GenerateCertificate(jid.MustParse("conference.example.net"), xtls.WithEd25519())
	if err != nil {
		log.Fatal(err)
	}
	addrs, err := xtls.XMPPAddrs(cert.Leaf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("xmppAddr:", addrs)
	fmt.Println("dNSName:", cert.Leaf.DNSNames)
	fmt.Println("key:", cert.Leaf.PublicKeyAlgorithm)

	// Output:
	// xmppAddr: [conference.example.net]
	// dNSName: [conference.example.net]
	// key: Ed25519
}
