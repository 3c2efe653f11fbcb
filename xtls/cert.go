package xtls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/net/idna"
	"mellium.im/xmpp/jid"
)

var (
	// oidSubjectAltName is id-ce-subjectAltName (RFC 5280, section 4.2.1.6).
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	// oidXMPPAddr is id-on-xmppAddr (RFC 6120, section 13.7.1.4).
	oidXMPPAddr = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 8, 5}
)

const (
	defaultValidity   = 365 * 24 * time.Hour
	defaultCAValidity = 10 * 365 * 24 * time.Hour
	// backdate is how far before now NotBefore is set, so that a peer whose
	// clock is somewhat behind ours accepts a brand new certificate.
	backdate = time.Hour
)

// A CertOption changes how GenerateCertificate, IssueCertificate and
// GenerateCA make a certificate.
type CertOption func(*certConfig)

type certConfig struct {
	ed25519     bool
	validity    time.Duration
	criticalSAN bool
	issuer      *tls.Certificate
}

// WithEd25519 makes the new key an Ed25519 key instead of an ECDSA P-256 key.
func WithEd25519() CertOption {
	return func(c *certConfig) { c.ed25519 = true }
}

// WithValidity sets how long the certificate stays valid from now: NotAfter is
// now plus d.
// NotBefore is always one hour before now, to tolerate clock skew.
// The default is one year for GenerateCertificate and IssueCertificate and
// ten years for GenerateCA.
// A d that is not positive makes certificate generation fail.
func WithValidity(d time.Duration) CertOption {
	return func(c *certConfig) { c.validity = d }
}

// WithCriticalSAN marks the subjectAltName extension critical.
// Certificates made by this package carry a subject, so RFC 5280 lets the
// extension be non-critical, and it is by default.
// The option exists to imitate issuers that do mark it critical, as RFC 5280
// requires when the subject is empty: xtls accepts such certificates, and
// tests need them.
func WithCriticalSAN() CertOption {
	return func(c *certConfig) { c.criticalSAN = true }
}

// issuedBy makes the certificate signed by ca instead of self-signed.
func issuedBy(ca tls.Certificate) CertOption {
	return func(c *certConfig) { c.issuer = &ca }
}

// GenerateCertificate makes a fresh key and a self-signed certificate naming
// the bare JID of addr, suitable for both ends of an xtls session.
//
// The key is ECDSA P-256 unless WithEd25519 is given.
// The certificate has the bare JID as subject common name, and a non-critical
// subjectAltName holding an id-on-xmppAddr otherName with the bare JID (RFC
// 6120, section 13.7.1.4); when addr has no localpart (a server or service),
// the subjectAltName also holds the domain as a dNSName (an A-label for an
// internationalized domain).
// It has a random 128-bit serial number, is valid from one hour ago for the
// duration set by WithValidity (one year by default), is not a CA, and allows
// digital signatures for both TLS client and server authentication.
// The resourcepart of addr, if any, is ignored.
//
// The returned certificate has Leaf set.
func GenerateCertificate(addr jid.JID, opts ...CertOption) (tls.Certificate, error) {
	cfg := certConfig{validity: defaultValidity}
	for _, o := range opts {
		o(&cfg)
	}
	bare := addr.Bare()
	if bare.Domainpart() == "" {
		return tls.Certificate{}, errors.New("xtls: cannot make a certificate for an empty JID")
	}
	san, err := marshalSAN(bare)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: bare.String()},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		ExtraExtensions: []pkix.Extension{{
			Id:       oidSubjectAltName,
			Critical: cfg.criticalSAN,
			Value:    san,
		}},
	}
	return cfg.create(tmpl)
}

// IssueCertificate is like GenerateCertificate, but the certificate is signed
// by the certificate authority ca instead of being self-signed: the case of an
// enterprise that runs its own CA.
// ca.Leaf (or, if Leaf is nil, the first certificate of ca.Certificate) must be
// a CA certificate allowed to sign certificates, and ca.PrivateKey its key.
//
// The chain of the result is the new certificate followed by ca's chain.
func IssueCertificate(ca tls.Certificate, addr jid.JID, opts ...CertOption) (tls.Certificate, error) {
	return GenerateCertificate(addr, append(opts[:len(opts):len(opts)], issuedBy(ca))...)
}

// GenerateCA makes a fresh key and a self-signed certificate authority with
// subject common name name, for IssueCertificate.
// It is a CA (BasicConstraints CA=true, no path length limit) allowed to sign
// certificates and CRLs, valid from one hour ago for ten years unless
// WithValidity says otherwise.
// WithEd25519 applies; WithCriticalSAN has no effect.
//
// The returned certificate has Leaf set.
func GenerateCA(name string, opts ...CertOption) (tls.Certificate, error) {
	cfg := certConfig{validity: defaultCAValidity}
	for _, o := range opts {
		o(&cfg)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return cfg.create(tmpl)
}

// create completes tmpl with a serial number and validity period, makes a key
// and signs the certificate with it or with the issuer's key.
func (cfg *certConfig) create(tmpl *x509.Certificate) (tls.Certificate, error) {
	if cfg.validity <= 0 {
		return tls.Certificate{}, fmt.Errorf("xtls: certificate validity %v is not positive", cfg.validity)
	}
	var (
		pub  crypto.PublicKey
		priv crypto.Signer
	)
	if cfg.ed25519 {
		p, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("xtls: generating key: %w", err)
		}
		pub, priv = p, k
	} else {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("xtls: generating key: %w", err)
		}
		pub, priv = &k.PublicKey, k
	}

	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(cfg.validity)

	parent, signer := tmpl, priv
	var chain [][]byte
	if cfg.issuer != nil {
		caLeaf, caSigner, err := issuerOf(*cfg.issuer)
		if err != nil {
			return tls.Certificate{}, err
		}
		parent, signer = caLeaf, caSigner
		chain = cfg.issuer.Certificate
		if len(chain) == 0 {
			chain = [][]byte{caLeaf.Raw}
		}
	}

	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("xtls: creating certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("xtls: parsing new certificate: %w", err)
	}
	return tls.Certificate{
		Certificate: append([][]byte{der}, chain...),
		PrivateKey:  priv,
		Leaf:        leaf,
	}, nil
}

// issuerOf returns the CA certificate and signing key of ca, after checking
// that it may sign certificates.
func issuerOf(ca tls.Certificate) (*x509.Certificate, crypto.Signer, error) {
	leaf := ca.Leaf
	if leaf == nil {
		if len(ca.Certificate) == 0 {
			return nil, nil, errors.New("xtls: issuer has no certificate")
		}
		var err error
		if leaf, err = x509.ParseCertificate(ca.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("xtls: parsing issuer certificate: %w", err)
		}
	}
	if !leaf.BasicConstraintsValid || !leaf.IsCA {
		return nil, nil, fmt.Errorf("xtls: issuer %q is not a CA certificate", leaf.Subject.CommonName)
	}
	if leaf.KeyUsage != 0 && leaf.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("xtls: issuer %q may not sign certificates", leaf.Subject.CommonName)
	}
	signer, ok := ca.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("xtls: issuer private key of type %T cannot sign", ca.PrivateKey)
	}
	// x509.CreateCertificate checks that signer matches leaf's public key.
	return leaf, signer, nil
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("xtls: generating serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
}

// otherName is the OtherName of RFC 5280, section 4.2.1.6, as the [0] choice
// of GeneralName (IMPLICIT, so the SEQUENCE tag becomes [0]):
//
//	OtherName ::= SEQUENCE {
//	     type-id    OBJECT IDENTIFIER,
//	     value      [0] EXPLICIT ANY DEFINED BY type-id }
//
// with a UTF8String value, as id-on-xmppAddr requires (RFC 6120, section
// 13.7.1.4: XmppAddr ::= UTF8String).
type otherName struct {
	TypeID asn1.ObjectIdentifier
	Value  string `asn1:"explicit,tag:0,utf8"`
}

// marshalSAN returns the DER of a subjectAltName naming the bare JID addr as
// an xmppAddr and, if addr is a domain JID with a domain name (not an IP
// address), as a dNSName.
func marshalSAN(addr jid.JID) ([]byte, error) {
	on, err := asn1.MarshalWithParams(otherName{TypeID: oidXMPPAddr, Value: addr.String()}, "tag:0")
	if err != nil {
		return nil, fmt.Errorf("xtls: encoding xmppAddr: %w", err)
	}
	names := []asn1.RawValue{{FullBytes: on}}
	if addr.Localpart() == "" && !isIPLiteral(addr.Domainpart()) {
		dns, err := idna.Lookup.ToASCII(addr.Domainpart())
		if err != nil {
			return nil, fmt.Errorf("xtls: domain %q has no DNS form: %w", addr.Domainpart(), err)
		}
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(dns)})
	}
	san, err := asn1.Marshal(names)
	if err != nil {
		return nil, fmt.Errorf("xtls: encoding subjectAltName: %w", err)
	}
	return san, nil
}

// isIPLiteral reports whether a domainpart is an IPv4 address or a bracketed
// IPv6 address, as RFC 7622 allows.
func isIPLiteral(domain string) bool {
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		return net.ParseIP(domain[1:len(domain)-1]) != nil
	}
	return net.ParseIP(domain) != nil
}

// WriteCertificatePEM writes the chain of c as PEM "CERTIFICATE" blocks, leaf
// first, followed by its private key as a PKCS #8 "PRIVATE KEY" block, to the
// file at path.
// The file has mode 0600 and is replaced atomically: the data is written to a
// temporary file in the same directory, synced, and renamed over path, so a
// reader sees the old file or the new one, never a partial one.
func WriteCertificatePEM(path string, c tls.Certificate) error {
	if len(c.Certificate) == 0 {
		return errors.New("xtls: no certificate to write")
	}
	key, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return fmt.Errorf("xtls: encoding private key: %w", err)
	}
	defer clear(key)
	var buf bytes.Buffer
	for _, der := range c.Certificate {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der}); err != nil {
			return fmt.Errorf("xtls: encoding certificate: %w", err)
		}
	}
	if err := pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: key}); err != nil {
		return fmt.Errorf("xtls: encoding private key: %w", err)
	}
	defer clear(buf.Bytes())
	if err := writeFileAtomic(path, buf.Bytes(), nil); err != nil {
		return fmt.Errorf("xtls: writing %s: %w", path, err)
	}
	return nil
}

// LoadCertificatePEM reads a certificate chain and its private key from a PEM
// file such as WriteCertificatePEM writes.
// The returned certificate has Leaf set.
func LoadCertificatePEM(path string) (tls.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("xtls: %w", err)
	}
	defer clear(data)
	c, err := tls.X509KeyPair(data, data)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("xtls: loading %s: %w", path, err)
	}
	if c.Leaf == nil {
		// X509KeyPair leaves Leaf nil with GODEBUG=x509keypairleaf=0.
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("xtls: loading %s: %w", path, err)
		}
	}
	return c, nil
}
