package xtls

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"
)

// UserCA is one person's own certificate authority: a CA certificate that
// names their bare JID (id-on-xmppAddr) and signs the certificates of their
// devices. A peer that pairs with (or pins on first use) any device whose
// chain ends in a user CA for the same bare JID pins the CA's key, not the
// device's: a new device of the same person, or a renewed device
// certificate, is then trusted without pairing again.
type UserCA struct {
	bare jid.JID
	cert tls.Certificate
}

// NewUserCA makes a fresh key and a self-signed CA certificate naming the
// bare JID of addr: subject CN = bare JID, subjectAltName xmppAddr = bare
// JID, CA=true, allowed to sign certificates, valid ten years unless
// WithValidity says otherwise. WithEd25519 applies.
func NewUserCA(addr jid.JID, opts ...CertOption) (*UserCA, error) {
	cfg := certConfig{validity: defaultCAValidity}
	for _, o := range opts {
		o(&cfg)
	}
	bare := addr.Bare()
	if bare.Localpart() == "" {
		return nil, errors.New("xtls: a user CA names a person's bare JID (local@domain)")
	}
	san, err := marshalSAN(bare)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: bare.String()},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		ExtraExtensions:       []pkix.Extension{{Id: oidSubjectAltName, Value: san}},
	}
	c, err := cfg.create(tmpl)
	if err != nil {
		return nil, err
	}
	return &UserCA{bare: bare, cert: c}, nil
}

// LoadUserCA reads a user CA written by WriteUserCA (or WriteCertificatePEM).
func LoadUserCA(path string) (*UserCA, error) {
	c, err := LoadCertificatePEM(path)
	if err != nil {
		return nil, err
	}
	bare, ok := userCAJID(c.Leaf)
	if !ok {
		return nil, fmt.Errorf("xtls: %s is not a user CA (a CA certificate naming one bare JID)", path)
	}
	return &UserCA{bare: bare, cert: c}, nil
}

// WriteUserCA writes the CA's certificate and key to path (PEM, mode 0600,
// atomically).
func (ca *UserCA) WriteUserCA(path string) error { return WriteCertificatePEM(path, ca.cert) }

// JID returns the bare JID the CA names.
func (ca *UserCA) JID() jid.JID { return ca.bare }

// Certificate returns the CA certificate and its key.
func (ca *UserCA) Certificate() tls.Certificate { return ca.cert }

// Fingerprint returns the SHA-256 SPKI fingerprint of the CA: what peers pin.
func (ca *UserCA) Fingerprint() Fingerprint { return SPKIFingerprint(ca.cert.Leaf) }

// Issue makes a device certificate for the CA's bare JID, signed by the CA;
// its chain is [device, CA]. WithValidity and WithEd25519 apply.
func (ca *UserCA) Issue(opts ...CertOption) (tls.Certificate, error) {
	return IssueCertificate(ca.cert, ca.bare, opts...)
}

// userCAJID reports whether cert is a CA certificate naming exactly one bare
// JID with a localpart in xmppAddr, and returns it.
func userCAJID(cert *x509.Certificate) (jid.JID, bool) {
	if cert == nil || !cert.IsCA {
		return jid.JID{}, false
	}
	names, err := XMPPAddrs(cert)
	if err != nil || len(names) != 1 {
		return jid.JID{}, false
	}
	j, err := jid.Parse(names[0])
	if err != nil || j.Localpart() == "" || j.Resourcepart() != "" {
		return jid.JID{}, false
	}
	return j, true
}

// userCAFor returns the certificate of the chain that is a user CA for the
// peer's bare JID and signed the leaf, if there is one, after checking the
// leaf's validity under it. A CA in the chain that names another JID is an
// identity error: a person's CA speaks only for that person.
func userCAFor(certs []*x509.Certificate, peer jid.JID) (*x509.Certificate, error) {
	if len(certs) < 2 {
		return nil, nil
	}
	leaf := certs[0]
	for _, c := range certs[1:] {
		j, ok := userCAJID(c)
		if !ok {
			continue
		}
		if !j.Equal(peer.Bare()) {
			names, _ := XMPPAddrs(c)
			return nil, &IdentityError{Peer: peer, Names: names, Reason: "the chain's user CA names another JID"}
		}
		if err := leaf.CheckSignatureFrom(c); err != nil {
			continue
		}
		return c, nil
	}
	return nil, nil
}
