package xtls

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"slices"

	"mellium.im/xmpp/jid"
)

// cipherSuites12 are the only TLS 1.2 suites xtls accepts: ECDHE key
// exchange with an AEAD. TLS 1.3 suites are not configurable in crypto/tls
// and all of them are AEADs.
var cipherSuites12 = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// verdict is the trust decision made during a handshake; pins are written
// only once the handshake has succeeded, when the peer has proved that it
// holds the key.
type verdict struct {
	trust   TrustMethod
	fp      Fingerprint         // the leaf's fingerprint
	pinFP   Fingerprint         // what is (to be) pinned: the leaf's, or its user CA's
	viaCA   bool                // pinFP is the peer's user CA
	certs   []*x509.Certificate //
	pin     bool                // pin pinFP (first use, pairing)
	replace bool                // replace the pins with pinFP (accepted key change, re-pairing)
	pair    bool                // trusted only if pairing with a code succeeds
}

// verify decides whether the certificate chain a peer presented is trusted,
// in the documented order. It runs inside tls.Config.VerifyConnection. When
// no rule trusts the peer but code (a pairing code for it) is set, the
// handshake may complete provisionally: the verdict then says pair.
func (h *Handler) verify(cs tls.ConnectionState, peer jid.JID, st *State, code []byte) (verdict, error) {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		return verdict{}, &UntrustedError{Peer: peer, Err: errors.New("no certificate")}
	}
	leaf := certs[0]
	v := verdict{fp: SPKIFingerprint(leaf), certs: certs}
	v.pinFP = v.fp
	reject := func(err error) (verdict, error) {
		names, _ := XMPPAddrs(leaf)
		h.log.Warn("xtls: certificate rejected", "peer", peer.String(), "fingerprint", v.fp.String(),
			"xmppAddrs", names, "dnsNames", leaf.DNSNames, "subject", leaf.Subject.String(), "err", err)
		return verdict{}, err
	}
	// The certificate must name the peer, whatever trusts it.
	if err := checkIdentity(leaf, peer); err != nil {
		return reject(err)
	}
	now := h.cfg.Time()
	var pkixErr error
	if h.cfg.RootCAs != nil {
		if _, err := verifyChain(certs, h.cfg.RootCAs, now); err == nil {
			v.trust = TrustPKIX
			return v, nil
		} else {
			pkixErr = err
		}
	}
	// The other rules trust a key, not a chain: the leaf must still be valid,
	// and so must the person's CA if the chain has one; then the CA's key
	// is what is pinned.
	if err := checkValidity(leaf, now); err != nil {
		return reject(err)
	}
	ca, err := userCAFor(certs, peer)
	if err != nil {
		return reject(err)
	}
	if ca != nil {
		if err := checkValidity(ca, now); err != nil {
			return reject(err)
		}
		v.pinFP, v.viaCA = SPKIFingerprint(ca), true
	}
	bare := peer.Bare()
	var pins []Fingerprint
	if h.cfg.Pins != nil {
		var err error
		if pins, err = h.cfg.Pins.Pins(bare); err != nil {
			return reject(err)
		}
		if slices.Contains(pins, v.fp) {
			v.trust, v.pinFP, v.viaCA = TrustPinned, v.fp, false
			return v, nil
		}
		if v.viaCA && slices.Contains(pins, v.pinFP) {
			v.trust = TrustPinned
			return v, nil
		}
	}
	if len(pins) > 0 {
		mismatch := &PinMismatchError{Peer: peer, Pinned: pins, Presented: v.pinFP}
		switch {
		case h.cfg.AcceptKeyChange != nil && h.cfg.AcceptKeyChange(mismatch):
			v.trust, v.replace = TrustApplication, true
			return v, nil
		case code != nil:
			v.pair, v.replace = true, true // pairing again replaces the pins
			return v, nil
		}
		return reject(mismatch)
	}
	if h.cfg.TrustOnFirstUse && h.cfg.Pins != nil {
		v.trust, v.pin = TrustFirstUse, true
		return v, nil
	}
	if h.cfg.VerifyPeer != nil {
		s := *st
		s.PeerCertificates, s.Fingerprint = certs, v.fp
		fillTLS(&s, cs)
		if err := h.cfg.VerifyPeer(s); err == nil {
			v.trust = TrustApplication
			return v, nil
		} else if code == nil {
			return reject(&UntrustedError{Peer: peer, Fingerprint: v.fp, Err: err})
		}
	}
	if code != nil && h.cfg.Pins != nil {
		v.pair, v.pin = true, true
		return v, nil
	}
	return reject(&UntrustedError{Peer: peer, Fingerprint: v.fp, Err: pkixErr})
}

// commit records what the verdict decided once the handshake succeeded.
func (h *Handler) commit(v verdict, peer jid.JID) error {
	switch {
	case v.replace:
		return h.cfg.Pins.ReplacePins(peer.Bare(), v.pinFP)
	case v.pin:
		return h.cfg.Pins.AddPin(peer.Bare(), v.pinFP)
	}
	return nil
}

func fillTLS(s *State, cs tls.ConnectionState) {
	s.Version = cs.Version
	s.CipherSuite = cs.CipherSuite
	s.CurveID = cs.CurveID
	s.Resumed = cs.DidResume
}
