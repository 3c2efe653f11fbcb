package xtls

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/sendctx"
	"github.com/xmppxtls/xtls/transport"
)

// DialOption changes how Dial opens a tunnel.
type DialOption func(*dialConfig)

type dialConfig struct {
	sid  string
	code []byte
}

// WithPairingCode pairs with the peer using code, whether or not another
// rule trusts it: after the TLS handshake both ends run CPace with the code
// (the peer's Config.PairingCode must return the same one) and, if both
// used the same, pin each other's keys (TrustPaired). See NewPairingCode.
func WithPairingCode(code string) DialOption {
	return func(c *dialConfig) { c.code = NormalizePairingCode([]byte(code)) }
}

// WithSID opens the tunnel with the given sid instead of a random one. Two
// entities that want exactly one tunnel between them (a chat) dial with the
// same fixed sid: if both dial at once, both get the one tunnel.
func WithSID(sid string) DialOption {
	return func(c *dialConfig) { c.sid = sid }
}

// probeTimeout bounds the disco#info query that tells an offline peer from
// one without XTLS after a start was answered service-unavailable.
const probeTimeout = 5 * time.Second

// Dial opens a tunnel to peer and runs the TLS handshake as its client: the
// ClientHello travels right behind the start, so the handshake costs no
// extra round trip. peer is a full JID, or a bare JID whose best resource
// that offers XTLS is dialed (see Resolve; if it turns out unavailable,
// the next is tried); a bare JID without one fails with a *ResolveError,
// ErrPeerOffline or ErrNoXTLSClient. It returns when the peer is trusted,
// or an error: ErrNotSupported, ErrPeerUnavailable or ErrRefused wrapping the
// stanza.Error that said so; a *DowngradeError (ErrDowngrade) instead of
// ErrNotSupported for a peer whose key we have pinned, which is known to
// speak XTLS; *IdentityError, *PinMismatchError,
// *UntrustedError or *CertificateExpiredError for a peer that is not
// trusted; *NotTrustedByPeerError for a peer that does not trust us;
// *PolicyError for a peer that offers only weaker TLS;
// *PairingError when a pairing code was in play and pairing failed. ctx
// bounds the whole of it.
//
// Dial returns only once the peer has accepted our certificate: a peer
// that refuses it gives a *NotTrustedByPeerError (ErrNotTrustedByPeer). In
// TLS 1.3 the client's handshake completes before the server has checked
// the client's certificate, so the responder sends a verdict after it
// (docs/protocol.md, contract 3); a peer that predates it (contract 2)
// cannot tell us, and its refusal shows only at the first Read.
func (h *Handler) Dial(ctx context.Context, peer jid.JID, opts ...DialOption) (*Conn, error) {
	if peer.Resourcepart() == "" {
		return h.dialBare(ctx, peer, opts...)
	}
	var o dialConfig
	for _, opt := range opts {
		opt(&o)
	}
	defer h.tuneChunk(ctx)()
	tc, err := h.ep.Open(peer, o.sid)
	if err != nil {
		return nil, fmt.Errorf("xtls: dial %s: %w", peer, err)
	}
	c := h.newConn(tc, o.code)
	err = c.Handshake(ctx)
	var crossed *transport.CrossedError
	if errors.As(err, &crossed) {
		// The peer dialed us with the same sid at the same moment and its
		// start won: its tunnel is ours, and we are its TLS server.
		c = h.newConn(crossed.Conn, o.code)
		err = c.Handshake(ctx)
	}
	if err != nil {
		c.tls.Close()
		return nil, h.dialError(ctx, peer, err)
	}
	return c, nil
}

// dialError maps what went wrong to the package's errors, keeping the cause
// wrapped.
func (h *Handler) dialError(ctx context.Context, peer jid.JID, err error) error {
	var pe *transport.PeerError
	if errors.As(err, &pe) && (pe.Element == "start" || pe.Element == "data") {
		switch pe.Err.Condition {
		case stanza.ServiceUnavailable:
			why := h.probe(ctx, peer)
			if pins := h.pins(peer); why == ErrNotSupported && len(pins) > 0 {
				return &DowngradeError{Peer: peer, Pinned: pins, Err: pe.Err}
			}
			return fmt.Errorf("xtls: dial %s: %w: %w", peer, why, pe.Err)
		case stanza.FeatureNotImplemented:
			if pins := h.pins(peer); len(pins) > 0 {
				return &DowngradeError{Peer: peer, Pinned: pins, Err: pe.Err}
			}
			return fmt.Errorf("xtls: dial %s: %w: %w", peer, ErrNotSupported, pe.Err)
		case stanza.NotAcceptable, stanza.Forbidden, stanza.NotAllowed, stanza.NotAuthorized:
			return fmt.Errorf("xtls: dial %s: %w: %w", peer, ErrRefused, pe.Err)
		}
	}
	if unreachable(err) {
		return fmt.Errorf("xtls: dial %s: %w: %w", peer, ErrPeerUnavailable, err)
	}
	if policyViolation(err) {
		err = &PolicyError{Err: err}
	}
	return fmt.Errorf("xtls: dial %s: %w", peer, err)
}

// unreachable reports an IQ error by which a server says that it could
// not reach the peer's server (remote-server-not-found), or gave up waiting
// for it (remote-server-timeout, which the transport retried first).
func unreachable(err error) bool {
	var se stanza.Error
	return errors.As(err, &se) &&
		(se.Condition == stanza.RemoteServerNotFound || se.Condition == stanza.RemoteServerTimeout)
}

// probe tells why a start was answered service-unavailable: a peer that
// answers disco#info without our feature lacks XTLS; one that does not
// answer is unavailable.
func (h *Handler) probe(ctx context.Context, peer jid.JID) error {
	if sendctx.Check(ctx) != nil {
		return ErrPeerUnavailable // as if it had not answered
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	inf, err := disco.GetInfo(ctx, "", peer, h.session())
	if err != nil {
		return ErrPeerUnavailable
	}
	if slices.ContainsFunc(inf.Features, func(f info.Feature) bool { return f.Var == NS }) {
		return ErrRefused
	}
	return ErrNotSupported
}

// contextWithTimeout returns a context that ends after d or when done is
// closed.
func contextWithTimeout(d time.Duration, done <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
