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
	mu      sync.Mutex
	domains map[string]proxyEntry // server domain → its proxies
	hosts   map[string]hostEntry  // proxy JID → its streamhost
}

type proxyEntry struct {
	proxies []jid.JID
	err     error
	at      time.Time
}

type hostEntry struct {
	host s5b.StreamHost
	err  error
	at   time.Time
}

func fresh(at time.Time, err error) bool {
	ttl := proxyTTL
	if err != nil {
		ttl = proxyFailTTL
	}
	return !at.IsZero() && time.Since(at) < ttl
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
	c := &h.proxyCache
	key := domain.String()
	c.mu.Lock()
	e, ok := c.domains[key]
	c.mu.Unlock()
	if ok && fresh(e.at, e.err) {
		return e.proxies, e.err
	}
	ps, err := s5b.FindProxies(ctx, h.session(), domain)
	if ctx.Err() != nil {
		return nil, err // not the server's answer: not kept
	}
	c.mu.Lock()
	if c.domains == nil {
		c.domains = make(map[string]proxyEntry)
	}
	c.domains[key] = proxyEntry{proxies: ps, err: err, at: time.Now()}
	c.mu.Unlock()
	return ps, err
}

// streamHost returns the address proxy gives for itself.
func (h *Handler) streamHost(ctx context.Context, proxy jid.JID) (s5b.StreamHost, error) {
	c := &h.proxyCache
	key := proxy.String()
	c.mu.Lock()
	e, ok := c.hosts[key]
	c.mu.Unlock()
	if ok && fresh(e.at, e.err) {
		return e.host, e.err
	}
	hosts, err := s5b.GetStreamHosts(ctx, h.session(), proxy)
	if ctx.Err() != nil {
		return s5b.StreamHost{}, err
	}
	var host s5b.StreamHost
	if err == nil {
		if len(hosts) == 0 {
			err = errors.New("xtls: the proxy gave no streamhost")
		} else {
			host = hosts[0]
		}
	}
	c.mu.Lock()
	if c.hosts == nil {
		c.hosts = make(map[string]hostEntry)
	}
	c.hosts[key] = hostEntry{host: host, err: err, at: time.Now()}
	c.mu.Unlock()
	return host, err
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
