package xtlstest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// Errors returned by a Network.
var (
	// ErrClosed is returned by Session after Close.
	ErrClosed = errors.New("xtlstest: network closed")
	// ErrAddrInUse is returned by Session for an address that is connected.
	ErrAddrInUse = errors.New("xtlstest: address already connected")
	// ErrNotFullJID is returned by Session for an address without resource.
	ErrNotFullJID = errors.New("xtlstest: not a full JID")
	// ErrNotConnected is returned by Disconnect for an unknown address.
	ErrNotConnected = errors.New("xtlstest: address not connected")
)

// A Network is an in-memory XMPP network: a router between sessions that
// delivers stanzas by full JID, stamps their 'from' attribute as a server
// does, answers for offline addresses, and injects faults (latency, loss,
// duplication, reordering, bandwidth limits) on demand.
//
// Its methods are safe for concurrent use. Close releases everything it
// started.
type Network struct {
	cfg   atomic.Pointer[config]
	cfgMu sync.Mutex // serializes SetFaults

	mu       sync.RWMutex
	sessions map[string]*session // connected sessions by full JID
	proxies  map[string]*Proxy   // by JID; added under cfgMu too
	closed   bool
	ids      uint64
	wg       sync.WaitGroup // the goroutines of every session

	traceMu sync.Mutex
	stats   counters

	presMu sync.Mutex // the presence of every session: session.avail
}

// NewNetwork returns a network configured by opts. Without options it is a
// perfect network: no latency, no faults, no limits.
func NewNetwork(opts ...Option) *Network {
	n := &Network{sessions: make(map[string]*session)}
	c := defaultConfig()
	for _, o := range opts {
		o(&c)
	}
	c.finish()
	n.startProxies(&c)
	n.cfg.Store(&c)
	return n
}

// SetFaults changes the configuration of a running network: the options
// apply to the stanzas the network reads afterwards, on top of the current
// configuration. Latency(0, 0), Drop(0) and the like turn a fault off again.
func (n *Network) SetFaults(opts ...Option) {
	n.cfgMu.Lock()
	defer n.cfgMu.Unlock()
	c := *n.cfg.Load()
	for _, o := range opts {
		o(&c)
	}
	c.finish()
	n.startProxies(&c)
	n.cfg.Store(&c)
}

// Session connects a new client with the full JID addr to the network and
// returns its bound session, whose LocalAddr is addr and RemoteAddr the
// domain of addr. The caller must run its Serve method to receive stanzas.
// It is an error if addr has no resourcepart or is already connected.
//
// ctx bounds the stream negotiation only.
func (n *Network) Session(ctx context.Context, addr jid.JID, opts ...SessionOption) (*xmpp.Session, error) {
	if addr.Resourcepart() == "" {
		return nil, fmt.Errorf("%w: %q", ErrNotFullJID, addr)
	}
	var sc sessionConfig
	for _, o := range opts {
		o(&sc)
	}
	cfg := n.cfg.Load()
	key := addr.String()

	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	if _, ok := n.sessions[key]; ok {
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrAddrInUse, key)
	}
	n.ids++
	id := "xtlstest-" + strconv.FormatUint(n.ids, 10)
	client, server := newPipe(pipeAddr(key), pipeAddr(addr.Domain().String()), cfg.c2sBuf, 0)
	s := newSession(n, addr, sc, server)
	n.sessions[key] = s
	n.wg.Add(2)
	n.mu.Unlock()

	go s.writeLoop(serverHeader(addr, id))
	go s.readLoop()

	session, err := xmpp.NewSession(ctx, addr.Domain(), addr, client, 0, negotiator(addr))
	if err != nil {
		client.Close()
		s.kill(nil)
		return nil, fmt.Errorf("xtlstest: negotiating %s: %w", key, err)
	}
	return session, nil
}

// Disconnect ends the session of addr from the network's side, as a server
// does: it sends the stream error cond (none if cond.Err is empty) and
// closes the stream, so that the client's Serve returns (with cond). The
// address is free again when Disconnect returns; stanzas sent to it
// afterwards are treated as bound to an offline address. It does not wait
// for the client to close its stream.
func (n *Network) Disconnect(addr jid.JID, cond stream.Error) error {
	n.mu.RLock()
	s := n.sessions[addr.String()]
	n.mu.RUnlock()
	if s == nil {
		return fmt.Errorf("%w: %s", ErrNotConnected, addr)
	}
	var e *stream.Error
	if cond.Err != "" {
		e = &cond
	}
	s.kill(e)
	return nil
}

// Close ends every session by closing its stream (the clients' Serve calls
// return nil once they have closed theirs), closes every Proxy (its listener
// and all its connections), and waits for every goroutine the network
// started to return. A client that does not close its stream is cut off
// after CloseTimeout. Session fails with ErrClosed afterwards.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	all := make([]*session, 0, len(n.sessions))
	for _, s := range n.sessions {
		all = append(all, s)
	}
	n.mu.Unlock()
	n.cfgMu.Lock() // a SetFaults that started a proxy has registered it
	n.closeProxies()
	n.cfgMu.Unlock()
	for _, s := range all {
		s.kill(nil)
	}
	n.wg.Wait()
	return nil
}

// lookup returns the connected session with the given full JID, or nil.
func (n *Network) lookup(key string) *session {
	n.mu.RLock()
	s := n.sessions[key]
	n.mu.RUnlock()
	return s
}

// remove makes s unreachable.
func (n *Network) remove(s *session) {
	n.mu.Lock()
	if n.sessions[s.key] == s {
		delete(n.sessions, s.key)
	}
	n.mu.Unlock()
}

// Stats counts what a Network did since it was created.
type Stats struct {
	// Stanzas and Bytes count the stanzas read from the sessions and their
	// size as the clients wrote them.
	Stanzas, Bytes int64
	// Delivered and DeliveredBytes count the stanzas written to sessions,
	// duplicates and errors made by the network included.
	Delivered, DeliveredBytes int64
	// Bounced counts the IQ requests answered with service-unavailable
	// because their recipient was not connected (offline, bare JID, domain,
	// unknown, none at all, or gone before delivery).
	Bounced int64
	// Discarded counts the other stanzas that could not be delivered and were
	// dropped, including those a Disconnect or Close found in a queue.
	Discarded int64
	// Dropped, WaitErrors, Duplicated and Reordered count the faults
	// injected by Drop, WaitErrors, Duplicate and Reorder.
	Dropped, WaitErrors, Duplicated, Reordered int64
	// Intercepted counts the stanzas that Intercept sent elsewhere or
	// dropped.
	Intercepted int64
	// PolicyViolations counts the sessions closed for MaxStanzaSize.
	PolicyViolations int64
}

type counters struct {
	stanzas, bytes, delivered, deliveredBytes, bounced, discarded atomic.Int64
	dropped, waitErrors, duplicated, reordered, intercepted       atomic.Int64
	policyViolations                                              atomic.Int64
}

// Stats returns the network's counters.
func (n *Network) Stats() Stats {
	c := &n.stats
	return Stats{
		Stanzas:          c.stanzas.Load(),
		Bytes:            c.bytes.Load(),
		Delivered:        c.delivered.Load(),
		DeliveredBytes:   c.deliveredBytes.Load(),
		Bounced:          c.bounced.Load(),
		Discarded:        c.discarded.Load(),
		Dropped:          c.dropped.Load(),
		WaitErrors:       c.waitErrors.Load(),
		Duplicated:       c.duplicated.Load(),
		Reordered:        c.reordered.Load(),
		Intercepted:      c.intercepted.Load(),
		PolicyViolations: c.policyViolations.Load(),
	}
}
