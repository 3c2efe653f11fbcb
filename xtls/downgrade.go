package xtls

import (
	"errors"
	"fmt"
	"strings"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// ErrDowngrade is matched by a *DowngradeError.
var ErrDowngrade = errors.New("xtls: possible downgrade attack: a peer known to speak XTLS answered as if it did not")

// DowngradeError reports a peer known to speak XTLS — we have its key
// pinned, because we trusted it on first use, paired with it or trust its
// person's CA — that answered our start as a client without XTLS does:
// feature-not-implemented, or service-unavailable while its disco#info
// answers without the feature. Its client may have changed, but a server
// on the way may also be hiding XTLS from us to make us fall back to
// something it can read: never fall back to anything unencrypted. It
// matches ErrDowngrade, not ErrNotSupported, and unwraps to the
// stanza.Error that came.
type DowngradeError struct {
	// Peer is the full JID dialed.
	Peer jid.JID
	// Pinned are the fingerprints pinned for its bare JID.
	Pinned []Fingerprint
	// Err is the answer to the start.
	Err stanza.Error
}

func (e *DowngradeError) Error() string {
	pinned := make([]string, len(e.Pinned))
	for i, p := range e.Pinned {
		pinned[i] = p.String()
	}
	return fmt.Sprintf("xtls: possible downgrade attack: %s answered %s, as if it had no XTLS, but we have pinned its key (%s): "+
		"a server may be hiding XTLS from us; do not fall back to anything unencrypted",
		e.Peer, e.Err.Condition, strings.Join(pinned, ", "))
}

// Is matches ErrDowngrade.
func (e *DowngradeError) Is(target error) bool { return target == ErrDowngrade }

// Unwrap returns the stanza.Error.
func (e *DowngradeError) Unwrap() error { return e.Err }

// pins returns the fingerprints pinned for peer's bare JID: a peer with
// pins is known to speak XTLS. A pin store that cannot be read says
// nothing either way (its error shows on the next handshake).
func (h *Handler) pins(peer jid.JID) []Fingerprint {
	if h.cfg.Pins == nil {
		return nil
	}
	fps, err := h.cfg.Pins.Pins(peer.Bare())
	if err != nil {
		h.log.Warn("xtls: reading pins", "peer", peer.Bare().String(), "err", err)
		return nil
	}
	return fps
}
