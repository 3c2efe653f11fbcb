package xtlstest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/internal/socks5"
)

// Defaults of a Proxy.
const (
	// ProxyHandshakeTimeout is how long a Proxy waits by default for a
	// client's SOCKS5 greeting and request.
	ProxyHandshakeTimeout = 10 * time.Second
	// ProxyActivationTimeout is how long a Proxy keeps by default the
	// connections of a bytestream that is not activated, counted from the
	// first one.
	ProxyActivationTimeout = time.Minute
	// ProxyPendingLimit is how many connections a Proxy holds by default
	// that are not relaying yet (in their handshake or waiting for
	// activation).
	ProxyPendingLimit = 64
)

// Proxy65 runs a SOCKS5 bytestream proxy (XEP-0065), as Prosody's proxy65
// and ejabberd's mod_proxy65 do, for the server of domain: the component
// proxy.<domain>, listed in the disco#items of the server (a query to
// domain, or with no 'to' from a session of domain), with the disco#info
// identity proxy/bytestreams. It
// answers the streamhost query with its own JID and a TCP listener on
// 127.0.0.1 (never any other address), and activates, at the requester's
// IQ, the two SOCKS5 connections of a bytestream: see [Proxy]. Sessions of
// any domain may use it, as through federation. Its answers come after the
// Latency; no other fault applies to them.
//
// Network.Proxy returns it; Close closes it. NewNetwork panics if it cannot
// listen, as net/http/httptest does. Given to SetFaults, Proxy65 starts the
// proxy then; a domain that has one keeps it, with its options.
func Proxy65(domain string, opts ...ProxyOption) Option {
	return func(c *config) {
		c.proxies = append(slices.Clip(c.proxies), proxySpec{domain: domain, opts: opts})
	}
}

type proxySpec struct {
	domain string
	opts   []ProxyOption
}

// A ProxyOption configures a Proxy.
type ProxyOption func(*proxyConfig)

type proxyConfig struct {
	handshake, activation time.Duration
	maxPending            int
	tamper                func(Chunk) ([]byte, bool)
	onConnect             func(dstAddr string, nth int)
}

// ProxyTimeouts sets how long the proxy waits for a client's SOCKS5
// handshake (ProxyHandshakeTimeout by default), and how long the
// connections of a bytestream wait for their activation, counted from the
// first connection (ProxyActivationTimeout by default). A connection that
// runs out of time is closed. Zero or less keeps the default.
func ProxyTimeouts(handshake, activation time.Duration) ProxyOption {
	return func(c *proxyConfig) {
		if handshake > 0 {
			c.handshake = handshake
		}
		if activation > 0 {
			c.activation = activation
		}
	}
}

// ProxyMaxPending sets how many connections the proxy holds that are not
// relaying yet (ProxyPendingLimit by default). A connection accepted over the
// limit is closed at once, before its SOCKS5 greeting.
func ProxyMaxPending(n int) ProxyOption {
	return func(c *proxyConfig) { c.maxPending = max(n, 1) }
}

// ProxyOnConnect calls f when the proxy has taken the nth connection (1 or
// 2) to the DST.ADDR dstAddr, before it answers that connection's SOCKS5
// request: the client's Dial waits for f. XEP-0065 has the target connect
// first, so a test can connect a hijacker from f when nth is 1 (with
// Proxy.Dial): it gets the place of the requester, whose own connection is
// then refused. f runs on the connection's goroutine, possibly on several at
// once; it may dial the proxy.
func ProxyOnConnect(f func(dstAddr string, nth int)) ProxyOption {
	return func(c *proxyConfig) { c.onConnect = f }
}

// ProxyTamper lets f change the bytes the proxy relays, standing for a
// faulty or malicious proxy: the proxy forwards out instead of each chunk
// it reads, and if cut is true it then cuts the bytestream as Proxy.Cut
// does. Returning c.Data, false forwards it unchanged; a copy with a byte
// flipped corrupts it; c.Data twice replays it. f is called on the relaying
// goroutines, possibly on several at once, in order for one direction of
// one bytestream; c.Data is valid only during the call and out only until
// f is called again.
func ProxyTamper(f func(c Chunk) (out []byte, cut bool)) ProxyOption {
	return func(c *proxyConfig) { c.tamper = f }
}

// CutAfter cuts every bytestream once the proxy has relayed n bytes in one
// direction: the receiving end reads exactly those n bytes and then the end
// of the stream (if it sent nothing the proxy had not read yet, see
// Proxy.Cut). It is a ProxyTamper, and replaces any other.
func CutAfter(n int64) ProxyOption {
	return ProxyTamper(func(c Chunk) ([]byte, bool) {
		if end := c.Offset + int64(len(c.Data)); end < n {
			return c.Data, false
		}
		return c.Data[:max(n-c.Offset, 0)], true
	})
}

// A Chunk is what a Proxy read from one end of a bytestream, as a
// ProxyTamper sees it.
type Chunk struct {
	Stream Activation
	// FromRequester is true for bytes from the requester to the target.
	FromRequester bool
	// Offset counts the bytes read in this direction before Data.
	Offset int64
	// Data is what the proxy read, valid only during the call.
	Data []byte
}

// An Activation describes a bytestream that a Proxy relays.
type Activation struct {
	SID               string
	Requester, Target jid.JID
	// DstAddr is the SOCKS5 DST.ADDR of the two connections: the
	// hexadecimal SHA-1 of SID, Requester and Target.
	DstAddr string
}

// ProxyStats counts what a Proxy did since it started.
type ProxyStats struct {
	// Accepted counts the TCP connections accepted.
	Accepted int64
	// Refused counts the connections closed before they had a place in a
	// bytestream: over the ProxyMaxPending limit, a failed, timed out or refused
	// SOCKS5 handshake.
	Refused int64
	// Expired counts the connections closed because their bytestream was
	// not activated in time.
	Expired int64
	// Activated counts the bytestreams activated, Cut those cut by Cut or
	// a ProxyTamper.
	Activated, Cut int64
	// Relayed counts the bytes forwarded (as a ProxyTamper left them).
	Relayed int64
}

// A Proxy is the SOCKS5 bytestream proxy (XEP-0065) that Proxy65 runs on a
// Network, for tests of a bytestream path that need no real server.
//
// Its SOCKS5 side takes no authentication and only a CONNECT to a domain
// name of 40 lowercase hexadecimal characters (the SHA-1 of XEP-0065) with
// port 0; it answers anything else with the matching reply code (command
// or address type not supported; host unreachable for another name or a
// port) and closes the connection. The first connection to a DST.ADDR is the
// target's and the second the requester's; a third, or one to a bytestream
// already activated, is refused with "connection not allowed by ruleset".
// The activate IQ of the requester (whose full JID, with the sid and the
// target's JID, gives the DST.ADDR) joins the two, and the proxy relays bytes
// both ways until both ends have closed their side (a half close is passed
// on), one fails, or the bytestream is cut. As XEP-0065 says, the activation
// fails with item-not-found if there is no connection for that DST.ADDR
// (also when the sender is not the requester, since its JID is in the hash),
// with not-allowed if only one end (the target) is connected, and with
// conflict if the bytestream is already active.
//
// Its methods are safe for concurrent use.
type Proxy struct {
	jid  jid.JID
	ln   *net.TCPListener
	port int
	cfg  proxyConfig
	wg   sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	pending int                   // connections not relaying yet
	slots   map[string]*proxySlot // by DST.ADDR
	conns   map[*net.TCPConn]struct{}
	stats   ProxyStats
}

// startProxy starts the proxy of spec.
func startProxy(spec proxySpec) (*Proxy, error) {
	domain, err := jid.New("", spec.domain, "")
	if err != nil {
		return nil, fmt.Errorf("xtlstest: proxy of domain %q: %w", spec.domain, err)
	}
	addr, err := jid.New("", "proxy."+domain.Domainpart(), "")
	if err != nil {
		return nil, fmt.Errorf("xtlstest: proxy of domain %q: %w", spec.domain, err)
	}
	cfg := proxyConfig{handshake: ProxyHandshakeTimeout, activation: ProxyActivationTimeout, maxPending: ProxyPendingLimit}
	for _, o := range spec.opts {
		o(&cfg)
	}
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("xtlstest: proxy %s: %w", addr, err)
	}
	p := &Proxy{
		jid:   addr,
		ln:    ln,
		port:  ln.Addr().(*net.TCPAddr).Port,
		cfg:   cfg,
		slots: make(map[string]*proxySlot),
		conns: make(map[*net.TCPConn]struct{}),
	}
	p.spawn(p.acceptLoop)
	return p, nil
}

// JID returns the proxy's address: proxy.<domain>.
func (p *Proxy) JID() jid.JID { return p.jid }

// Addr returns the "127.0.0.1:port" where the proxy accepts SOCKS5
// connections, as its streamhost names it.
func (p *Proxy) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// Dial connects to the proxy with SOCKS5, to the DST.ADDR dstAddr, as an end
// of a bytestream does; it stands for a third party (a hijacker who knows the
// hash, or the proxy's operator) in adversarial tests.
func (p *Proxy) Dial(ctx context.Context, dstAddr string) (net.Conn, error) {
	return socks5.Dial(ctx, p.Addr(), dstAddr, 0)
}

// Cut cuts every bytestream the proxy relays now, as a proxy that fails:
// it closes both connections of each, so that each end reads what was
// forwarded to it and then the end of the stream (or, as TCP does, a reset
// if the proxy had not read all that end sent). It returns how many it cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, sl := range p.slots {
		if sl.activated {
			p.endLocked(sl)
			p.stats.Cut++
			n++
		}
	}
	return n
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// close closes the listener and every connection, and waits for every
// goroutine of the proxy to return.
func (p *Proxy) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.ln.Close()
		for _, sl := range p.slots {
			p.endLocked(sl)
		}
		for c := range p.conns { // in their handshake
			p.dropLocked(c)
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// spawn runs f on a goroutine of its own, counted by p.wg. Every goroutine
// of the proxy starts here, so that once p.wg is done no code of the proxy
// runs but the end of spawn's. The caller holds p.mu and p is not closed,
// or p is not shared yet.
func (p *Proxy) spawn(f func()) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// acceptLoop accepts connections until the listener is closed.
func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.AcceptTCP()
		if err != nil {
			return
		}
		p.mu.Lock()
		switch {
		case p.closed:
			c.Close()
		case p.pending >= p.cfg.maxPending:
			p.stats.Accepted++
			p.stats.Refused++
			c.Close()
		default:
			p.stats.Accepted++
			p.pending++
			p.conns[c] = struct{}{}
			p.spawn(func() { p.serveConn(c) })
		}
		p.mu.Unlock()
	}
}
