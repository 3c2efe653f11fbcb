package xtls

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/internal/s5b"
)

// The Handler finds SOCKS5 bytestream proxies (XEP-0065) lazily, the first
// time a tunnel wants to move, and remembers what it found: the proxies in
// its own server's and a peer's server's disco#items, and each proxy's
// address as the proxy itself gives it.

const (
	// proxyTTL is how long a discovery's answer is kept; a failed one is
	// kept for proxyFailTTL.
	proxyTTL     = 10 * time.Minute
	proxyFailTTL = time.Minute
)

type proxyCache struct {
	domains answers[[]jid.JID]      // server domain → its proxies
	hosts   answers[s5b.StreamHost] // proxy JID → its streamhost
}

// answers remembers the answers to one kind of query by key, for proxyTTL
// (proxyFailTTL for an error), and asks each key once at a time: a caller
// that finds the query under way waits for it rather than asking again
// (behind a server's shaper every query waits for the session's queue).
type answers[V any] struct {
	mu     sync.Mutex
	known  map[string]answer[V]
	asking map[string]chan struct{} // closed when the query for the key ends
}

type answer[V any] struct {
	v   V
	err error
	at  time.Time
}

func fresh(at time.Time, err error) bool {
	ttl := proxyTTL
	if err != nil {
		ttl = proxyFailTTL
	}
	return !at.IsZero() && time.Since(at) < ttl
}

// get returns the answer for key: remembered, from the query under way, or
// from ask, which is called with ctx. An answer cut short by ctx is not
// kept.
func (a *answers[V]) get(ctx context.Context, key string, ask func(context.Context) (V, error)) (V, error) {
	for {
		a.mu.Lock()
		if e, ok := a.known[key]; ok && fresh(e.at, e.err) {
			a.mu.Unlock()
			return e.v, e.err
		}
		if ch := a.asking[key]; ch != nil {
			a.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				var zero V
				return zero, ctx.Err()
			}
		}
		if a.asking == nil {
			a.asking = make(map[string]chan struct{})
			a.known = make(map[string]answer[V])
		}
		ch := make(chan struct{})
		a.asking[key] = ch
		a.mu.Unlock()

		v, err := ask(ctx)
		a.mu.Lock()
		delete(a.asking, key)
		close(ch)
		if ctx.Err() == nil {
			a.known[key] = answer[V]{v: v, err: err, at: time.Now()}
		}
		a.mu.Unlock()
		return v, err
	}
}

// prefetchProxies finds, as a tunnel starts under BytestreamAuto (beside
// its handshake), the proxies of our own server and the first one's
// address, so that a move later does not ask for them behind the bulk
// data that makes it move: on a server's shaper each such query waits for
// the session's queue. The answers are cached for the Handler's other
// tunnels, so this costs a few IQs once per proxyTTL. The peer's server is
// asked only when a move needs it (a peer must not make us query servers
// of its choosing merely by opening tunnels).
func (c *Conn) prefetchProxies() {
	ctx, cancel := context.WithTimeout(context.Background(), bytestreamTimeout)
	defer cancel()
	go func() {
		select {
		case <-c.raw.Conn.Done(): // the tunnel is gone: so is the need
			cancel()
		case <-ctx.Done():
		}
	}()
	if ps, err := c.h.domainProxies(ctx, c.h.session().LocalAddr().Domain()); err == nil && len(ps) > 0 {
		_, _ = c.h.streamHost(ctx, ps[0])
	}
}

// proxies returns the proxies a tunnel with peer may offer: its own
// server's first, then the peer's server's, at most maxOfferProxies.
func (h *Handler) proxies(ctx context.Context, peer jid.JID) ([]jid.JID, error) {
	var out []jid.JID
	var errs []error
	for _, d := range []jid.JID{h.session().LocalAddr().Domain(), peer.Domain()} {
		if len(out) > 0 && d.Equal(out[0].Domain()) {
			continue
		}
		ps, err := h.domainProxies(ctx, d)
		if err != nil {
			errs = append(errs, err)
		}
		for _, p := range ps {
			if len(out) < maxOfferProxies && !contains(out, p) {
				out = append(out, p)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func (h *Handler) domainProxies(ctx context.Context, domain jid.JID) ([]jid.JID, error) {
	return h.proxyCache.domains.get(ctx, domain.String(), func(ctx context.Context) ([]jid.JID, error) {
		return s5b.FindProxies(ctx, h.session(), domain)
	})
}

// streamHost returns the address proxy gives for itself.
func (h *Handler) streamHost(ctx context.Context, proxy jid.JID) (s5b.StreamHost, error) {
	return h.proxyCache.hosts.get(ctx, proxy.String(), func(ctx context.Context) (s5b.StreamHost, error) {
		hosts, err := s5b.GetStreamHosts(ctx, h.session(), proxy)
		if err == nil && len(hosts) == 0 {
			err = errors.New("xtls: the proxy gave no streamhost")
		}
		if err != nil {
			return s5b.StreamHost{}, err
		}
		return hosts[0], nil
	})
}

// proxyAllowed reports whether we connect to proxy for a tunnel with peer:
// only to a service of our own server's domain or of the peer's (the
// domain itself or a subdomain), and always at the address the proxy
// itself gives, never one the peer names: a peer must not make us connect
// anywhere it likes.
func (h *Handler) proxyAllowed(proxy, peer jid.JID) bool {
	if proxy.Localpart() != "" {
		return false
	}
	d := proxy.Domainpart()
	for _, base := range []string{h.session().LocalAddr().Domainpart(), peer.Domainpart()} {
		if d == base || strings.HasSuffix(d, "."+base) {
			return true
		}
	}
	return false
}
