package xtls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/transport"
)

// Config configures a Handler. Certificate is required; every other field
// has a safe default.
type Config struct {
	// Certificate is ours: a certificate naming our bare JID in an
	// id-on-xmppAddr subjectAltName, with its key (see GenerateCertificate).
	Certificate tls.Certificate

	// RootCAs, if set, trusts peers whose certificate chains to one of these
	// CAs (PKIX; for organisations).
	RootCAs *x509.CertPool
	// Pins remembers the keys of peers (by SHA-256 SPKI fingerprint, per
	// bare JID). A peer with pins must present a pinned key.
	Pins PinStore
	// TrustOnFirstUse trusts a peer with no pins on first contact and pins
	// its key (Pins must be set).
	TrustOnFirstUse bool
	// VerifyPeer is the application's own decision, consulted when no other
	// rule trusts the peer; returning nil trusts it (TrustApplication).
	VerifyPeer func(State) error
	// AcceptKeyChange is asked when a pinned peer presents another key. If it
	// returns true the new key replaces the pins and the peer is trusted
	// (TrustApplication); otherwise the handshake fails with the
	// *PinMismatchError. Default: refuse.
	AcceptKeyChange func(*PinMismatchError) bool

	// PairingCode returns the pairing code for a peer that no other rule
	// trusts (and for a pinned peer whose key changed): the TLS handshake
	// then completes provisionally and both ends run a password-authenticated
	// key exchange (CPace) bound to this TLS connection; only if both used
	// the same code is the peer trusted (TrustPaired) and its key pinned
	// (Pins must be set). A code people read to each other comes from
	// NewPairingCode; a device may return its long-lived printed secret for
	// every peer. After three attempts with the same code for a peer that
	// did not succeed (a wrong code, but also one abandoned or broken
	// midway, or still running), the code is refused: make a new one.
	PairingCode func(peer jid.JID) ([]byte, bool)

	// AcceptPeer decides whether a peer may open a tunnel to us (a Listener
	// must exist too). Default: any peer. A peer it refuses is answered
	// not-acceptable (cancel), before any limit is looked at: a refusal
	// is final, where a limit invites the peer to try again. It runs on
	// the session's Serve goroutine and must not block.
	AcceptPeer func(peer jid.JID) bool
	// AcceptFailed, if set, learns why a tunnel a peer opened to us was not
	// handed to Accept: its TLS handshake, trust decision or pairing failed
	// (a *PinMismatchError, *PairingError, *IdentityError, ...; the same
	// error Dial would return on the other side), or it did not complete
	// within HandshakeTimeout. The tunnel is aborted already: its slots are
	// free. A failure that starts a back-off (see MaxPending) is
	// reported once as a *BackoffError with the count, which unwraps to
	// the last failure; failures during a back-off are not reported one by
	// one. It runs on the tunnel's own goroutine; Handler.Close waits for
	// it, so it must not block for long. The log says the same.
	AcceptFailed func(peer jid.JID, err error)

	// MaxPending bounds the tunnels peers opened that Accept has not taken
	// yet (their handshake in progress, or complete and waiting), all peers
	// together: default 128. MaxPendingPerPeer bounds them for one peer (a
	// bare JID, all its resources together): default 32.
	// MaxHandshakesPerPeer bounds, for one peer, those whose handshake is in
	// progress: default 16. A start beyond any of them is answered resource-constraint (wait),
	// which the peer's transport tries again for a few seconds, and costs
	// us no TLS work; so a peer whose handshakes stall (a start and never a
	// ClientHello holds its slot for HandshakeTimeout) or who never gets
	// its tunnels accepted cannot take the slots of another.
	//
	// A failed handshake frees its slots at once: the tunnel is aborted
	// (policy-violation) once the TLS alert or verdict that says why has
	// been acknowledged (within 2 s), not closed gracefully. It also counts
	// against its peer: after 3 failures within 30 s (a handshake that
	// timed out counts) the peer's starts are answered resource-constraint
	// (wait) for 5 s; each further back-off doubles that, up to 5 minutes,
	// and after a back-off a single failure starts the next one. A
	// successful handshake, or 5 minutes without failure after the last
	// back-off ended, forgets the peer's failures.
	MaxPending           int
	MaxPendingPerPeer    int
	MaxHandshakesPerPeer int

	// MinVersion is the lowest TLS version accepted: TLS 1.2 by default. It
	// can be raised to TLS 1.3, never lowered: a lower value is replaced by
	// TLS 1.2 and logged.
	MinVersion uint16

	// BlockSize and Window are the transport's receive limits per tunnel
	// (see transport.Config); zero means the default.
	BlockSize int
	Window    int
	// Transport tunes the transport further; its BlockSize and Window are
	// overridden by the fields above when those are set. Leave its
	// ChunkSize zero and the Handler chooses it for the server: it asks the
	// server's disco#info identity once, beside the first Dial or accepted
	// handshake (see Handler.ChunkSize).
	Transport *transport.Config

	// NoQuickAck leaves the session's TCP socket alone. By default, on
	// Linux, when a response to one of the tunnel's IQs arrives the Handler
	// asks the kernel to acknowledge it at once (TCP_QUICKACK) instead of
	// after the usual ~40 ms delay: a server that writes with Nagle's
	// algorithm on (Prosody's default) holds its next stanza until that
	// ACK, which made a tunnel's handshake ~40-80 ms slower through it. It
	// costs an ACK segment when nothing else was about to be sent.
	NoQuickAck bool

	// Bytestreams says when a tunnel moves onto a SOCKS5 bytestream
	// (XEP-0065) through a proxy of its own or the peer's server, where
	// the servers' client limits do not apply: by default by itself once
	// it has a backlog (a Write waited 100 ms for the path) or has sent
	// BytestreamAfter bytes, so that chat stays on IQs and a file moves.
	// Both ends must run contract 4; either may refuse.
	Bytestreams BytestreamPolicy
	// Reattach is how long a tunnel waits to be continued when its XMPP
	// session ends, or the peer's does (default 2 minutes; negative: never,
	// the tunnel fails at once as before). Meanwhile Read and Write wait
	// (their deadlines still apply); give the Handler the new session of
	// the same account with Handler.Reattach, and the tunnel goes on from
	// its new full JID without a new TLS handshake and without losing or
	// repeating a byte. It needs the peer to allow it too (contract 5,
	// ALPN "xmpp-xtls/5"); with a peer that does not, tunnels fail as
	// before. Past it Read and Write fail with an error matching
	// transport.ErrNotReattached.
	Reattach time.Duration
	// BytestreamAfter is how many application bytes a tunnel sends on IQs
	// before it tries to move even without a backlog (default 64 KiB).
	BytestreamAfter int

	// HandshakeTimeout bounds the TLS handshake of a tunnel the peer opens,
	// pairing and verdict included (Dial's is bounded by its context).
	// Default 30 s. A handshake that takes longer is aborted
	// (policy-violation) and counts as a failure (see MaxPending).
	HandshakeTimeout time.Duration

	// Logger receives events: rejected certificates (with fingerprint and
	// names), refused tunnels, protocol violations. Default: discard.
	Logger *slog.Logger

	// Time returns the current time, for certificate validity checks.
	// Default time.Now.
	Time func() time.Time
}

// TrustMethod says how the peer's certificate came to be trusted.
type TrustMethod int

// How a peer was trusted.
const (
	TrustNone        TrustMethod = iota // not (yet) trusted
	TrustPKIX                           // chain to Config.RootCAs
	TrustPinned                         // a pinned fingerprint for the peer's bare JID
	TrustFirstUse                       // first contact, now pinned
	TrustApplication                    // Config.VerifyPeer or Config.AcceptKeyChange
	TrustPaired                         // pairing with a code, now pinned
)

func (t TrustMethod) String() string {
	switch t {
	case TrustNone:
		return "none"
	case TrustPKIX:
		return "pkix"
	case TrustPinned:
		return "pinned"
	case TrustFirstUse:
		return "first-use"
	case TrustApplication:
		return "application"
	case TrustPaired:
		return "paired"
	}
	return fmt.Sprintf("TrustMethod(%d)", int(t))
}

// State describes an established tunnel: who is on the other end and how
// that was decided.
type State struct {
	// Peer and Local are the full JIDs of the two ends.
	Peer, Local jid.JID
	// SID is the tunnel's sid; Initiator reports whether we opened it (and
	// are the TLS client).
	SID       string
	Initiator bool

	// Version, CipherSuite and CurveID are the negotiated TLS version, cipher
	// suite and key exchange group (X25519MLKEM768 between Go peers).
	Version     uint16
	CipherSuite uint16
	CurveID     tls.CurveID
	// Resumed reports a resumed TLS session (no full handshake).
	Resumed bool

	// PeerCertificates is the chain the peer presented, leaf first;
	// Fingerprint is the SHA-256 SPKI fingerprint of the leaf.
	PeerCertificates []*x509.Certificate
	Fingerprint      Fingerprint
	// Trust says how the peer was trusted.
	Trust TrustMethod
	// Pinned is the fingerprint pinned for the peer's bare JID that this
	// connection matched or set (zero for PKIX or the application's
	// decision); ViaUserCA says it is the key of the person's own CA
	// (NewUserCA) rather than the device's.
	Pinned    Fingerprint
	ViaUserCA bool
}

// PeerCertificate returns the peer's leaf certificate.
func (s State) PeerCertificate() *x509.Certificate {
	if len(s.PeerCertificates) == 0 {
		return nil
	}
	return s.PeerCertificates[0]
}

// VersionName returns the TLS version's name ("TLS 1.3").
func (s State) VersionName() string { return tls.VersionName(s.Version) }

// CipherSuiteName returns the cipher suite's name.
func (s State) CipherSuiteName() string { return tls.CipherSuiteName(s.CipherSuite) }

func (c *Config) withDefaults() Config {
	d := *c
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.MinVersion < tls.VersionTLS12 {
		if d.MinVersion != 0 {
			d.Logger.Warn("xtls: MinVersion below TLS 1.2 ignored; using TLS 1.2", "requested", tls.VersionName(d.MinVersion))
		}
		d.MinVersion = tls.VersionTLS12
	}
	if d.HandshakeTimeout <= 0 {
		d.HandshakeTimeout = 30 * time.Second
	}
	if d.Reattach == 0 {
		d.Reattach = DefaultReattach
	}
	if d.BytestreamAfter <= 0 {
		d.BytestreamAfter = 64 << 10
	}
	for _, f := range []struct {
		v   *int
		def int
	}{{&d.MaxPending, 128}, {&d.MaxPendingPerPeer, 32}, {&d.MaxHandshakesPerPeer, 16}} {
		if *f.v <= 0 {
			*f.v = f.def
		}
	}
	if d.Time == nil {
		d.Time = time.Now
	}
	return d
}

func (c *Config) transportConfig() *transport.Config {
	var t transport.Config
	if c.Transport != nil {
		t = *c.Transport
	}
	if c.BlockSize != 0 {
		t.BlockSize = c.BlockSize
	}
	if c.Window != 0 {
		t.Window = c.Window
	}
	if c.NoQuickAck {
		t.NoQuickAck = true
	}
	if t.Logger == nil {
		t.Logger = c.Logger
	}
	if c.Reattach > 0 {
		t.Reattach = c.Reattach
	}
	return &t
}

// DefaultReattach is Config.Reattach's default.
const DefaultReattach = 2 * time.Minute
