package xtls

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/sendctx"
)

// Dialing a bare JID: the peer's available resources, learnt from presence,
// that advertise XTLS, best first.

// maxCandidates bounds the resources of one peer that are considered (the
// best by priority and recency): each may cost a disco#info query.
const maxCandidates = 16

var (
	// ErrPeerOffline: no available presence from the peer's bare JID has
	// reached us (it is offline, or does not share its presence with us:
	// it must be a contact). It matches ErrPeerUnavailable too.
	ErrPeerOffline = fmt.Errorf("%w: offline (no available presence from it)", ErrPeerUnavailable)
	// ErrNoXTLSClient: the peer is available, but none of its resources
	// advertises XTLS in its entity capabilities or disco#info. It matches
	// ErrNotSupported too.
	ErrNoXTLSClient = fmt.Errorf("%w: none of its available clients advertises it", ErrNotSupported)
)

// ResolveError reports a bare JID that Dial or Resolve could not turn into
// one of its resources: its Err is ErrPeerOffline or ErrNoXTLSClient.
type ResolveError struct {
	// Peer is the bare JID.
	Peer jid.JID
	// Resources lists the peer's available resources, best first: none if
	// offline, otherwise those that do not offer XTLS (a disco#info
	// without it, or no answer).
	Resources []jid.JID
	Err       error
}

func (e *ResolveError) Error() string {
	if len(e.Resources) == 0 {
		return fmt.Sprintf("xtls: %s is offline: no available presence from it (is it a contact who shares its presence with us?)", e.Peer)
	}
	res := make([]string, len(e.Resources))
	for i, r := range e.Resources {
		res[i] = r.Resourcepart()
	}
	return fmt.Sprintf("xtls: none of the available clients of %s supports XTLS (%s)", e.Peer, strings.Join(res, ", "))
}

// Unwrap returns ErrPeerOffline or ErrNoXTLSClient.
func (e *ResolveError) Unwrap() error { return e.Err }

// Resolve returns the full JID that Dial reaches for peer: peer itself if
// it is a full JID; for a bare JID, the best of its available resources
// that advertise XTLS: the highest presence priority, then the most
// recent presence. It knows the resources from the presence that the
// session receives (with the Handler in its mux: see Handle), so peer must
// share its presence with us, as contacts do. A resource whose presence
// carries entity capabilities (XEP-0115) that were seen before costs
// nothing; otherwise Resolve asks its disco#info (and caches a verified
// verification string for the next ones). Our own resource is never
// chosen. With none, the error is a *ResolveError: ErrPeerOffline or
// ErrNoXTLSClient. Within 3 s of our initial presence (see SendPresence)
// it waits for the peer's presence first. ctx bounds it.
func (h *Handler) Resolve(ctx context.Context, peer jid.JID) (jid.JID, error) {
	if peer.Resourcepart() != "" {
		return peer, nil
	}
	all, err := h.resolve(ctx, peer)
	if err != nil {
		return jid.JID{}, err
	}
	return all[0], nil
}

// dialBare dials the resources of peer that Resolve finds, best first,
// until one takes the tunnel; another is tried only if the first is
// unavailable or does not support XTLS after all, or gave a
// *DowngradeError (a resource of a pinned peer answered as if it had no
// XTLS): the next resource is authenticated by the same pins, so trying it
// costs no security. The downgrade is logged, and if no resource takes the
// tunnel Dial returns it rather than the last error: a server that hides
// XTLS on every resource must not make us report a peer without XTLS.
func (h *Handler) dialBare(ctx context.Context, peer jid.JID, opts ...DialOption) (*Conn, error) {
	all, err := h.resolve(ctx, peer)
	if err != nil {
		return nil, err
	}
	var downgrade error
	for _, to := range all {
		var c *Conn
		c, err = h.Dial(ctx, to, opts...)
		if errors.Is(err, ErrDowngrade) {
			h.log.Warn("xtls: possible downgrade: a resource of a pinned peer answered as if it had no XTLS; trying the next",
				"peer", to.String(), "err", err)
			if downgrade == nil {
				downgrade = err
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrPeerUnavailable) && !errors.Is(err, ErrNotSupported) {
			return c, err
		}
	}
	if downgrade != nil {
		return nil, downgrade
	}
	return nil, err
}

// resolve returns the XTLS resources of the bare JID peer, best first.
func (h *Handler) resolve(ctx context.Context, peer jid.JID) ([]jid.JID, error) {
	bare := peer.Bare()
	for {
		cands, changed, settleEnd := h.pres.candidates(bare, h.LocalAddr())
		h.discover(ctx, cands)
		var yes, no []jid.JID
		for _, c := range cands {
			if c.xtls > 0 {
				yes = append(yes, c.addr)
			} else {
				no = append(no, c.addr)
			}
		}
		if len(yes) > 0 {
			return yes, nil
		}
		if err := ctx.Err(); err != nil {
			// Queries cut short say nothing about the peer.
			return nil, fmt.Errorf("xtls: resolving %s: %w", bare, err)
		}
		if wait := time.Until(settleEnd); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-changed:
				t.Stop()
				continue
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
			}
		}
		if len(no) == 0 {
			return nil, &ResolveError{Peer: bare, Err: ErrPeerOffline}
		}
		return nil, &ResolveError{Peer: bare, Resources: no, Err: ErrNoXTLSClient}
	}
}

// candidates returns the resources of bare other than self, best first,
// with what the caps cache knows applied; a channel closed at the next
// change; and until when a peer without XTLS resources is waited for.
func (t *presenceTable) candidates(bare, self jid.JID) ([]resource, <-chan struct{}, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []resource
	for _, r := range t.peers[bare.String()] {
		if r.addr.Equal(self) {
			continue
		}
		c := *r
		if v, ok := t.caps[capsKey{c.caps.hash, c.caps.ver}]; ok && c.xtls == 0 {
			c.xtls = -1
			if v {
				c.xtls = 1
			}
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b resource) int {
		return cmp.Or(cmp.Compare(b.priority, a.priority), cmp.Compare(b.seq, a.seq))
	})
	if len(out) > maxCandidates {
		out = out[:maxCandidates]
	}
	var settle time.Time
	if !t.sentAt.IsZero() {
		settle = t.sentAt.Add(presenceSettle)
	}
	return out, t.changes(), settle
}

// discover asks the disco#info of the candidates whose support is not
// known yet, all at once, and records the answers.
func (h *Handler) discover(ctx context.Context, cands []resource) {
	var wg sync.WaitGroup
	for i := range cands {
		if cands[i].xtls != 0 {
			continue
		}
		wg.Add(1)
		go func(c *resource) {
			defer wg.Done()
			c.xtls = h.ask(ctx, *c)
		}(&cands[i])
	}
	wg.Wait()
}

// ask queries the disco#info of the resource c: for its caps node if it
// sent caps (falling back to no node if that is refused), and records
// whether it lists XTLS: for c's JID, and for the verification string too
// if the answer hashes to it. No answer counts as no XTLS for c until its
// next presence.
func (h *Handler) ask(ctx context.Context, c resource) int8 {
	if sendctx.Check(ctx) != nil {
		return -1 // cut by the caller: ask again next time
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	node := ""
	if c.caps.ver != "" {
		node = c.caps.node + "#" + c.caps.ver
	}
	inf, err := disco.GetInfo(ctx, node, c.addr, h.session())
	var se stanza.Error
	if node != "" && errors.As(err, &se) && sendctx.Check(ctx) == nil {
		node = ""
		inf, err = disco.GetInfo(ctx, "", c.addr, h.session())
	}
	if ctx.Err() != nil && err != nil {
		// Cut by the caller, not unanswered: ask again next time.
		return -1
	}
	yes := int8(-1)
	if err == nil && slices.ContainsFunc(inf.Features, func(f info.Feature) bool { return f.Var == NS }) {
		yes = 1
	}
	h.pres.learnt(c, node != "" && err == nil, inf, yes)
	return yes
}

// learnt records what the disco#info of the resource c said. If verify,
// the answer was for c's caps node and is checked against its
// verification string (XEP-0115 §5.4): when it matches, every resource
// with that string is known to say the same.
func (t *presenceTable) learnt(c resource, verify bool, inf disco.Info, yes int8) {
	if verify {
		if newHash := capsHashes[c.caps.hash]; newHash != nil {
			if ver, err := capsVer(inf, newHash()); err == nil && ver == c.caps.ver {
				t.mu.Lock()
				if t.caps == nil {
					t.caps = make(map[capsKey]bool)
				}
				if len(t.caps) >= maxCapsCache {
					for k := range t.caps {
						delete(t.caps, k)
						break
					}
				}
				t.caps[capsKey{c.caps.hash, c.caps.ver}] = yes > 0
				t.mu.Unlock()
			}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.peers[c.addr.Bare().String()][c.addr.Resourcepart()]; r != nil && r.caps == c.caps {
		r.xtls = yes
	}
}
