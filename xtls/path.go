package xtls

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/internal/bsframe"
	"github.com/xmppxtls/xtls/internal/s5b"
	"github.com/xmppxtls/xtls/transport"
)

// Moving a tunnel onto a SOCKS5 bytestream (XEP-0065), in contract 4. The
// side that wants to move (the offerer: the XEP-0065 requester) sends OFFER
// inside TLS with an attempt nonce and the proxies it may use; the other
// (the target) picks the first it may use too, asks the proxy itself for
// its address, connects to it with SOCKS5 (DST.ADDR from the XEP-0065 sid,
// hex of the nonce, and the two full JIDs) and answers ACCEPT with that
// proxy, or REFUSE. The offerer connects to the same proxy, activates the
// bytestream with the XEP-0065 IQ, and the two exchange authenticators
// derived from the TLS exporter of this tunnel (offerer first): whoever
// else took the proxy's slot cannot make them. Then the transport moves
// the tunnel's blocks onto the bytestream (transport.Conn.UseBytestream).
// Any failure leaves the tunnel on IQs, with one log record.
//
// OFFER:  nonce (16) | count (1) | count × (length (1) | proxy JID)
// ACCEPT: nonce (16) | length (1) | proxy JID
// REFUSE: nonce (16) | reason (1)

// BytestreamPolicy says when tunnels move onto SOCKS5 bytestreams.
type BytestreamPolicy int

const (
	// BytestreamAuto moves a tunnel by itself once it has sent
	// Config.BytestreamAfter bytes, and takes the peer's offers (default).
	BytestreamAuto BytestreamPolicy = iota
	// BytestreamOnRequest moves only when Conn.MoveToBytestream asks, and
	// takes the peer's offers.
	BytestreamOnRequest
	// BytestreamOff never moves: tunnels stay on IQs, and the peer's
	// offers are refused.
	BytestreamOff
)

// Why an offer was refused, as REFUSE carries it.
const (
	refuseOff     = 1 // bytestreams are off here
	refuseNoProxy = 2 // none of the proxies is usable
	refuseBusy    = 3 // a move is under way, or the tunnel is on one
	refuseFailed  = 4 // the proxy could not be reached
)

// ErrNoBytestream is matched by the errors of a move that did not happen:
// the tunnel goes on over IQs.
var ErrNoBytestream = errors.New("xtls: no bytestream")

// BytestreamError reports why a tunnel could not move onto a bytestream.
type BytestreamError struct {
	Why string
	Err error
}

func (e *BytestreamError) Error() string {
	s := "xtls: no bytestream: " + e.Why
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is matches ErrNoBytestream.
func (e *BytestreamError) Is(target error) bool { return target == ErrNoBytestream }

// Unwrap returns the cause.
func (e *BytestreamError) Unwrap() error { return e.Err }

const (
	// bytestreamTimeout bounds one attempt to move, from OFFER to the
	// authenticators.
	bytestreamTimeout = 30 * time.Second
	// maxOfferProxies bounds the proxies one OFFER names.
	maxOfferProxies = 4
	// firstBackoff is how long a tunnel waits before it tries to move
	// again by itself after an attempt (one that failed, or one whose
	// bytestream broke later); it doubles with each attempt up to
	// maxBackoff, and starts afresh once maxBackoff passed since the last
	// move that worked.
	firstBackoff = 30 * time.Second
	maxBackoff   = 10 * time.Minute
)

// PathState says which path carries a tunnel and what went each way: the
// transport's account (its payload bytes are TLS records), and the proxy
// of the bytestream while one carries the tunnel.
type PathState struct {
	transport.PathStats
	Proxy jid.JID
}

// paths is a Conn's bytestream negotiation state.
type paths struct {
	mu      sync.Mutex
	moving  bool                     // an attempt of ours or the peer's is under way
	waiting map[[16]byte]chan []byte // our offers, by nonce: the answer record (type first)
	// answering is the peer's offer we are taking, if any: a REFUSE from
	// the peer with its nonce says the peer gave it up.
	answering [16]byte
	giveUp    context.CancelFunc
	proxy     jid.JID
	written   int64     // application bytes written, for BytestreamAuto
	next      time.Time // no automatic attempt before
	backoff   time.Duration
	movedAt   time.Time // the last automatic move that worked
	// reattached is the tunnel's count of re-attachments the back-off
	// last saw (maybeMove).
	reattached int
	done       bool // the demultiplexer ended
}

// closed fails the offers that wait for an answer.
func (p *paths) closed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
	for n, ch := range p.waiting {
		close(ch)
		delete(p.waiting, n)
	}
}

// record handles a control record the demultiplexer read.
func (p *paths) record(c *Conn, typ byte, body []byte) {
	if len(body) < 16 {
		c.h.log.Info("xtls: short bytestream record ignored", "peer", c.raw.Peer().String(), "type", typ)
		return
	}
	var nonce [16]byte
	copy(nonce[:], body)
	switch typ {
	case recOffer:
		go c.answerOffer(nonce, body[16:])
	default:
		p.mu.Lock()
		ch := p.waiting[nonce]
		delete(p.waiting, nonce)
		var giveUp context.CancelFunc
		if ch == nil && typ == recRefuse && p.giveUp != nil && p.answering == nonce {
			giveUp = p.giveUp
		}
		p.mu.Unlock()
		if ch == nil && giveUp == nil {
			c.h.log.Info("xtls: bytestream record answers no attempt of ours: ignored", "peer", c.raw.Peer().String(), "type", typ)
		}
		if ch != nil {
			ch <- append([]byte{typ}, body[16:]...)
		}
		if giveUp != nil {
			// The offerer could not take the bytestream we connected to.
			giveUp()
		}
	}
}

// Path returns which path carries the tunnel now and what went each way.
func (c *Conn) Path() PathState {
	st := c.raw.Conn.Paths()
	c.paths.mu.Lock()
	defer c.paths.mu.Unlock()
	ps := PathState{PathStats: st}
	if st.Bytestream {
		ps.Proxy = c.paths.proxy
	}
	return ps
}

// backlogWait is how long a Write must have waited for the path (the
// tunnel has a backlog: a file, not a chat message) to start a move.
const backlogWait = 100 * time.Millisecond

// attempted sets when the next automatic attempt may come, after one that
// ended at now and moved the tunnel or not. A move that worked grows the
// back-off too: the next attempt comes only after its bytestream broke
// (or was left) and the back-off passed, so a proxy that cuts every
// bytestream is tried 30 s, 1, 2, 4 … 10 min apart, not every 30 s. Once
// maxBackoff passed since the last move that worked, a move starts the
// back-off afresh. Called with p.mu held.
func (p *paths) attempted(moved bool, now time.Time) {
	if moved && !p.movedAt.IsZero() && now.Sub(p.movedAt) >= maxBackoff {
		p.backoff = 0
	}
	p.backoff = min(max(2*p.backoff, firstBackoff), maxBackoff)
	if moved {
		p.movedAt = now
	}
	p.next = now.Add(p.backoff)
}

// watchBacklog starts watching a Write under BytestreamAuto: once it has
// waited backlogWait, a move starts. The function it returns stops the
// watch and says whether the Write waited that long.
func (c *Conn) watchBacklog() (stop func() bool) {
	if c.h.cfg.Bytestreams != BytestreamAuto {
		return func() bool { return false }
	}
	var fired atomic.Bool
	t := time.AfterFunc(backlogWait, func() {
		fired.Store(true)
		c.maybeMove(0, true)
	})
	return func() bool {
		t.Stop()
		return fired.Load()
	}
}

// maybeMove starts a move by itself once enough was written, or a Write
// had to wait for the path (Write calls it).
func (c *Conn) maybeMove(n int, waited bool) {
	if c.h.cfg.Bytestreams != BytestreamAuto || !c.framed() {
		return
	}
	p := &c.paths
	p.mu.Lock()
	p.written += int64(n)
	now := time.Now()
	if r := c.raw.Reattachments(); r != p.reattached {
		// A re-attachment left the bytestream, if there was one: the
		// tunnel may move again at once, not after the back-off.
		p.reattached = r
		p.next, p.backoff = time.Time{}, 0
	}
	due := (waited || p.written >= int64(c.h.cfg.BytestreamAfter)) && !p.moving && !p.done && now.After(p.next)
	if due {
		// Asking the transport costs a round trip to its loop: not more
		// than once a second.
		p.next = now.Add(time.Second)
	}
	p.mu.Unlock()
	if !due || c.raw.Conn.Paths().Bytestream {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), bytestreamTimeout)
		defer cancel()
		err := c.MoveToBytestream(ctx)
		p.mu.Lock()
		p.attempted(err == nil, time.Now())
		p.mu.Unlock()
		if err != nil && !errors.Is(err, errBusy) {
			c.h.log.Info("xtls: tunnel stays on IQs", "peer", c.raw.Peer().String(), "sid", c.state.SID, "err", err)
		}
	}()
}

var errBusy = errors.New("a move is under way")

// MoveToBytestream moves the tunnel onto a SOCKS5 bytestream through a
// proxy that both ends' servers offer (XEP-0065), without a new TLS
// handshake and without losing a byte; it returns once the tunnel is on
// it, or with an error matching ErrNoBytestream if it stays on IQs (the
// peer runs an older contract, has bytestreams off, no proxy works, or the
// bytestream could not be authenticated). With BytestreamAuto a tunnel
// moves by itself once it has sent Config.BytestreamAfter bytes.
func (c *Conn) MoveToBytestream(ctx context.Context) error {
	if !c.framed() {
		return &BytestreamError{Why: "the peer does not speak contract 4 (" + alpnContract4 + ")"}
	}
	if c.h.cfg.Bytestreams == BytestreamOff {
		return &BytestreamError{Why: "bytestreams are off (Config.Bytestreams)"}
	}
	p := &c.paths
	p.mu.Lock()
	if p.moving || c.raw.Conn.Paths().Bytestream {
		p.mu.Unlock()
		return &BytestreamError{Why: "busy", Err: errBusy}
	}
	p.moving = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.moving = false
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, bytestreamTimeout)
	defer cancel()

	proxies, err := c.h.proxies(ctx, c.State().Peer)
	if err != nil || len(proxies) == 0 {
		return &BytestreamError{Why: "no proxy found", Err: err}
	}
	// The proxy's address is asked for while the offer travels: it is a
	// round trip behind whatever the session has queued.
	first := make(chan hostAnswer, 1)
	go func() {
		h, err := c.h.streamHost(ctx, proxies[0])
		first <- hostAnswer{h, err}
	}()
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	body := append([]byte(nil), nonce[:]...)
	body = append(body, byte(len(proxies)))
	for _, pr := range proxies {
		s := pr.String()
		body = append(body, byte(len(s)))
		body = append(body, s...)
	}
	ch := make(chan []byte, 1)
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return &BytestreamError{Why: "the tunnel is closed"}
	}
	if p.waiting == nil {
		p.waiting = make(map[[16]byte]chan []byte)
	}
	p.waiting[nonce] = ch
	p.mu.Unlock()
	forget := func() {
		p.mu.Lock()
		delete(p.waiting, nonce)
		p.mu.Unlock()
	}
	if err := c.writeRecord(recOffer, body); err != nil {
		forget()
		return &BytestreamError{Why: "sending the offer", Err: err}
	}
	var ans []byte
	select {
	case ans = <-ch:
	case <-ctx.Done():
		forget()
		return &BytestreamError{Why: "no answer to the offer", Err: ctx.Err()}
	}
	if ans == nil {
		return &BytestreamError{Why: "the tunnel closed"}
	}
	if ans[0] == recRefuse {
		why := "refused"
		if len(ans) == 2 {
			why = refuseReason(ans[1])
		}
		return &BytestreamError{Why: "the peer refused: " + why}
	}
	proxy, ok := parseJIDField(ans[1:])
	if !ok || !contains(proxies, proxy) {
		return &BytestreamError{Why: "the peer accepted with a proxy we did not offer"}
	}
	var host hostAnswer
	if proxy.Equal(proxies[0]) {
		host = <-first
	} else {
		host.h, host.err = c.h.streamHost(ctx, proxy)
	}
	conn, err := c.takeAccepted(ctx, proxy, host, nonce)
	if err != nil {
		// The target waits on the proxy for us: it need not wait longer.
		_ = c.writeRecord(recRefuse, append(nonce[:], refuseFailed))
		return err
	}
	return c.use(conn, proxy)
}

// hostAnswer is what a proxy said its address is.
type hostAnswer struct {
	h   s5b.StreamHost
	err error
}

// takeAccepted is the offerer's side once the target accepted: connect to
// the proxy, activate, authenticate.
func (c *Conn) takeAccepted(ctx context.Context, proxy jid.JID, host hostAnswer, nonce [16]byte) (net.Conn, error) {
	sid := hex.EncodeToString(nonce[:])
	if host.err != nil {
		return nil, &BytestreamError{Why: "asking the proxy for its address", Err: host.err}
	}
	st := c.State() // the full JIDs now: a re-attachment changes them
	conn, err := s5b.Dial(ctx, host.h, sid, st.Local, st.Peer)
	if err != nil {
		return nil, &BytestreamError{Why: "connecting to the proxy", Err: err}
	}
	if err := s5b.Activate(ctx, c.h.session(), proxy, sid, st.Peer); err != nil {
		conn.Close()
		return nil, &BytestreamError{Why: "activating the bytestream", Err: err}
	}
	if err := c.authenticate(ctx, conn, bsframe.Initiator, sid, nonce); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// answerOffer is the target's side of a move: it runs on a goroutine of
// its own for each OFFER.
func (c *Conn) answerOffer(nonce [16]byte, body []byte) {
	p := &c.paths
	refuse := func(why byte) {
		if err := c.writeRecord(recRefuse, append(nonce[:], why)); err != nil {
			c.h.log.Debug("xtls: refusing a bytestream offer failed", "err", err)
		}
	}
	if c.h.cfg.Bytestreams == BytestreamOff {
		refuse(refuseOff)
		return
	}
	p.mu.Lock()
	busy := p.moving || c.raw.Conn.Paths().Bytestream
	if !busy {
		p.moving = true
	}
	p.mu.Unlock()
	if busy {
		refuse(refuseBusy)
		return
	}
	defer func() {
		p.mu.Lock()
		p.moving = false
		p.mu.Unlock()
	}()
	offered, ok := parseOffer(body)
	if !ok {
		c.h.log.Info("xtls: malformed bytestream offer refused", "peer", c.raw.Peer().String())
		refuse(refuseNoProxy)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), bytestreamTimeout)
	defer cancel()
	p.mu.Lock()
	p.answering, p.giveUp = nonce, cancel
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.giveUp = nil
		p.mu.Unlock()
	}()
	sid := hex.EncodeToString(nonce[:])
	st := c.State() // the full JIDs now: a re-attachment changes them
	var (
		conn  net.Conn
		proxy jid.JID
		last  error
	)
	for _, pr := range offered {
		if !c.h.proxyAllowed(pr, st.Peer) {
			continue
		}
		host, err := c.h.streamHost(ctx, pr)
		if err != nil {
			last = err
			continue
		}
		conn, err = s5b.Dial(ctx, host, sid, st.Peer, st.Local)
		if err != nil {
			last = err
			continue
		}
		proxy = pr
		break
	}
	if conn == nil {
		why := byte(refuseNoProxy)
		if last != nil {
			why = refuseFailed
			c.h.log.Info("xtls: no proxy of the peer's offer reachable", "peer", c.raw.Peer().String(), "err", last)
		}
		refuse(why)
		return
	}
	ps := proxy.String()
	ans := append(append(nonce[:0:0], nonce[:]...), byte(len(ps)))
	if err := c.writeRecord(recAccept, append(ans, ps...)); err != nil {
		conn.Close()
		return
	}
	if err := c.authenticate(ctx, conn, bsframe.Responder, sid, nonce); err != nil {
		conn.Close()
		c.h.log.Warn("xtls: bytestream refused", "peer", c.raw.Peer().String(), "proxy", ps, "err", err)
		return
	}
	if err := c.use(conn, proxy); err != nil {
		c.h.log.Info("xtls: tunnel stays on IQs", "peer", c.raw.Peer().String(), "err", err)
	}
}

// authenticate exchanges the bytestream's authenticators, derived from the
// TLS exporter of this tunnel, within ctx.
func (c *Conn) authenticate(ctx context.Context, conn net.Conn, role bsframe.Role, sid string, nonce [16]byte) error {
	cs := c.tls.ConnectionState()
	ai, ar, err := bsframe.Authenticators(cs.ExportKeyingMaterial, sid, nonce)
	if err != nil {
		return &BytestreamError{Why: "deriving the authenticators", Err: err}
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := bsframe.Authenticate(conn, role, ai, ar); err != nil {
		return &BytestreamError{Why: "the bytestream did not authenticate (someone else in the proxy's slot?)", Err: err}
	}
	_ = conn.SetDeadline(time.Time{})
	return nil
}

// use hands conn to the transport.
func (c *Conn) use(conn net.Conn, proxy jid.JID) error {
	if err := c.raw.Conn.UseBytestream(conn); err != nil {
		conn.Close()
		return &BytestreamError{Why: "the transport refused it", Err: err}
	}
	c.paths.mu.Lock()
	c.paths.proxy = proxy
	c.paths.mu.Unlock()
	c.h.log.Info("xtls: tunnel moved onto a bytestream", "peer", c.raw.Peer().String(), "sid", c.state.SID, "proxy", proxy.String())
	return nil
}

// LeaveBytestream moves the tunnel back to IQs; the returned channel is
// closed once the bytestream is closed.
func (c *Conn) LeaveBytestream() <-chan struct{} { return c.raw.Conn.LeaveBytestream() }

func refuseReason(b byte) string {
	switch b {
	case refuseOff:
		return "bytestreams are off"
	case refuseNoProxy:
		return "no usable proxy"
	case refuseBusy:
		return "a move is under way"
	case refuseFailed:
		return "the proxy could not be reached"
	}
	return fmt.Sprintf("reason %d", b)
}

func parseJIDField(b []byte) (jid.JID, bool) {
	if len(b) < 1 || len(b) != 1+int(b[0]) {
		return jid.JID{}, false
	}
	j, err := jid.Parse(string(b[1:]))
	return j, err == nil
}

func parseOffer(b []byte) ([]jid.JID, bool) {
	if len(b) < 1 || b[0] == 0 || int(b[0]) > maxOfferProxies {
		return nil, false
	}
	n, b := int(b[0]), b[1:]
	out := make([]jid.JID, 0, n)
	for range n {
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return nil, false
		}
		j, err := jid.Parse(string(b[1 : 1+int(b[0])]))
		if err != nil {
			return nil, false
		}
		out = append(out, j)
		b = b[1+int(b[0]):]
	}
	return out, len(b) == 0
}

func contains(js []jid.JID, j jid.JID) bool {
	for _, x := range js {
		if x.Equal(j) {
			return true
		}
	}
	return false
}
