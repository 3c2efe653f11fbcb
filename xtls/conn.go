package xtls

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
	"github.com/xmppxtls/xtls/transport"
)

// Conn is a TLS connection to a peer through a tunnel. It is a net.Conn; its
// Read returns ErrTruncated, not io.EOF, if the peer ended the tunnel without
// a TLS close_notify, and Close sends close_notify before the tunnel's close.
type Conn struct {
	h   *Handler
	raw *rawConn
	tls *tls.Conn

	dialCode []byte // a pairing code given to Dial: pair in any case
	mode     byte   // the initiator's mode byte, once sent or read

	hsMu   sync.Mutex // serialises Handshake
	hsDone bool
	hsErr  error

	mu      sync.Mutex
	state   State
	verdict verdict

	// demux reads contract 4's records once the verdict is through (nil
	// before, and in older contracts); paths is the bytestream
	// negotiation; readDeadline is the last read deadline set.
	demux        *demux
	paths        paths
	readDeadline time.Time
	// wgate orders contract 4's records into TLS (framed_write.go).
	wgate writeGate

	// wroteAfterPeerClose records an application Write after the peer
	// closed its direction: such data may be refused if the peer stopped
	// reading, and Close must then say so.
	wroteAfterPeerClose atomic.Bool
}

// rawConn sits between crypto/tls and the tunnel. It notices an end of
// stream reaching TLS (which crypto/tls alone would report as a clean
// io.EOF at a record boundary) and, on a tunnel the peer opened, checks that
// the first byte is a TLS handshake record before TLS sees anything.
type rawConn struct {
	*transport.Conn
	eof       atomic.Bool
	checkHead bool // responder: the first byte must be 0x16
	checked   bool // only touched by the goroutine reading (crypto/tls serialises reads)
	// abortOnClose makes Close abort the tunnel (policy-violation): set
	// while a responder's handshake runs, because crypto/tls closes the
	// conn when the handshake's context ends, and a graceful close would
	// keep the tunnel's slot for the linger.
	abortOnClose atomic.Bool
}

// errBadMode is the reason a responder aborts a tunnel whose first byte of
// application data is not a mode byte it knows.
var errBadMode = errors.New("xtls: the peer's mode byte is not A or P: tunnel aborted (policy-violation)")

// recordTypeHandshake is the content type of a TLS handshake record.
const recordTypeHandshake = 0x16

// errNotTLS is the reason a tunnel whose first byte is not TLS is torn down.
var errNotTLS = errors.New("xtls: first byte from the peer is not a TLS handshake record: no plaintext, ever")

func (r *rawConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if r.checkHead && !r.checked && n > 0 {
		r.checked = true
		if p[0] != recordTypeHandshake {
			r.Conn.Abort(stanza.PolicyViolation, errNotTLS.Error())
			return 0, errNotTLS
		}
	}
	if err == io.EOF {
		r.eof.Store(true)
	}
	return n, err
}

// Close closes the tunnel, or aborts it if abortOnClose is set.
func (r *rawConn) Close() error {
	if r.abortOnClose.Load() {
		r.Conn.Abort(stanza.PolicyViolation, "handshake did not complete in time")
		return nil
	}
	return r.Conn.Close()
}

func (h *Handler) newConn(tc *transport.Conn, dialCode []byte) *Conn {
	c := &Conn{h: h, raw: &rawConn{Conn: tc, checkHead: !tc.Initiator()}, dialCode: dialCode}
	c.state = State{Peer: tc.Peer(), Local: h.ep.LocalAddr(), SID: tc.SID(), Initiator: tc.Initiator()}
	cfg := h.serverTLS
	if tc.Initiator() {
		cfg = h.clientTLS
	}
	cfg = cfg.Clone()
	peer := tc.Peer()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		c.mu.Lock()
		st := c.state
		c.mu.Unlock()
		v, err := h.verify(cs, peer, &st, c.pairingCode())
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.verdict = v
		c.mu.Unlock()
		return nil
	}
	if tc.Initiator() {
		c.tls = tls.Client(c.raw, cfg)
	} else {
		c.tls = tls.Server(c.raw, cfg)
	}
	if h.cfg.Bytestreams == BytestreamAuto {
		go c.prefetchProxies()
	}
	return c
}

// Handshake runs the TLS handshake if it has not run yet, then pairing if
// a code is needed or was given to Dial, and records the trust decision (a
// pin, say). Dial and Accept return connections whose handshake is
// complete, so calling it is needed only to learn the outcome of a
// handshake that failed.
func (c *Conn) Handshake(ctx context.Context) error {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone {
		return c.hsErr
	}
	err := c.tls.HandshakeContext(ctx)
	if err != nil && c.state.Initiator {
		err = notTrustedByPeer(c.state.Peer, err)
	}
	if err == nil {
		err = c.afterTLS(ctx)
	}
	if err == nil {
		err = c.record()
	}
	if c.mode != 0 {
		err = c.sendVerdict(err)
	}
	if err == nil && c.contract() >= 4 {
		c.startDemux()
	}
	if err == nil && c.contract() >= 5 {
		err = c.allowReattach()
	}
	var crossed *transport.CrossedError
	if !errors.As(err, &crossed) {
		c.hsDone, c.hsErr = true, err
	}
	return err
}

// afterTLS exchanges the mode byte and pairs if either end needs it, before
// any application data. In contract 3 the initiator in mode A then waits for
// the responder's verdict; the responder sends it (sendVerdict) once it has
// recorded the trust decision.
func (c *Conn) afterTLS(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.tls.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.mu.Lock()
	v := c.verdict
	c.mu.Unlock()
	peer := c.state.Peer
	var code []byte
	if c.state.Initiator {
		if !v.pair && c.dialCode == nil {
			c.mode = modeApp
			if _, err := c.tls.Write([]byte{modeApp}); err != nil {
				return c.refusedFirst(err)
			}
			if c.contract() >= 3 {
				return c.readVerdict()
			}
			return nil
		}
		code = c.pairingCode()
		if !c.h.pairs.begin(peer, code) {
			return &PairingError{Peer: peer, Reason: PairingCodeDead}
		}
		c.mode = modePair
		if _, err := c.tls.Write([]byte{modePair}); err != nil {
			return c.refusedFirst(&PairingError{Peer: peer, Reason: PairingBroken, Err: err})
		}
		if err := c.pairAsInitiator(code); err != nil {
			return err
		}
	} else {
		var m [1]byte
		if _, err := io.ReadFull(c.tls, m[:]); err != nil {
			if v.pair {
				return &PairingError{Peer: peer, Reason: PairingBroken, Err: err}
			}
			return err
		}
		switch m[0] {
		case modeApp:
			c.mode = modeApp
			if v.pair {
				if c.contract() >= 3 {
					c.sendFail(PairingRequired)
				}
				return &PairingError{Peer: peer, Reason: PairingRequired}
			}
			return nil
		case modePair:
			c.mode = modePair
		default:
			// Not a clean end of stream: the initiator must not take
			// this for the application's EOF.
			reason := fmt.Sprintf("unknown mode byte 0x%02x", m[0])
			c.raw.Conn.Abort(stanza.PolicyViolation, reason)
			return fmt.Errorf("%w: %s", errBadMode, reason)
		}
		if code = c.pairingCode(); code == nil {
			c.sendFail(PairingNoCode)
			return &PairingError{Peer: peer, Reason: PairingNoCode}
		}
		if !c.h.pairs.begin(peer, code) {
			c.sendFail(PairingCodeDead)
			return &PairingError{Peer: peer, Reason: PairingCodeDead}
		}
		if err := c.pairAsResponder(code); err != nil {
			return err
		}
	}
	c.h.pairs.succeeded(peer, code)
	// Paired: the peer's key (or its person's CA) is pinned.
	c.mu.Lock()
	c.verdict.trust, c.verdict.pair = TrustPaired, false
	if !c.verdict.replace {
		c.verdict.pin = true
	}
	c.mu.Unlock()
	return nil
}

// record commits the trust decision (pins) and completes the State.
func (c *Conn) record() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.h.commit(c.verdict, c.state.Peer); err != nil {
		return err
	}
	cs := c.tls.ConnectionState()
	fillTLS(&c.state, cs)
	c.state.PeerCertificates = c.verdict.certs
	c.state.Fingerprint = c.verdict.fp
	c.state.Trust = c.verdict.trust
	if c.verdict.trust == TrustPinned || c.verdict.pin || c.verdict.replace {
		c.state.Pinned, c.state.ViaUserCA = c.verdict.pinFP, c.verdict.viaCA
	}
	return nil
}

// State describes the tunnel: the peer, the negotiated TLS parameters, the
// peer's certificate and how it was trusted. It is complete once the
// handshake has succeeded. Peer and Local are the full JIDs the tunnel
// runs between now (a re-attachment changes them).
func (c *Conn) State() State {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	st.Peer = c.raw.Peer()
	st.Local = c.raw.LocalAddr().(transport.Addr).JID
	return st
}

// Read reads application data.
func (c *Conn) Read(p []byte) (int, error) {
	if c.framed() {
		return c.demux.read(p)
	}
	n, err := c.tls.Read(p)
	if err == io.EOF && c.raw.eof.Load() {
		err = ErrTruncated
	}
	return n, err
}

// Write writes application data.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) > 0 && c.raw.PeerClosed() {
		c.wroteAfterPeerClose.Store(true)
	}
	if c.framed() {
		// A Write still waiting for the path after backlogWait is a
		// backlog: the move starts then, not once this Write is through
		// (on a server's shaper that can take many seconds).
		backlog := c.watchBacklog()
		n, err := c.writeApp(p)
		c.maybeMove(n, backlog())
		return n, err
	}
	return c.tls.Write(p)
}

// Close sends a TLS close_notify, then closes the tunnel: what was written
// is flushed (within the transport's close timeout) and the peer's direction
// stops being read. If the peer has closed the tunnel altogether, its
// refusal of our close_notify is no error: nothing of ours was lost.
func (c *Conn) Close() error {
	err := c.tls.Close()
	if c.framed() {
		c.demux.stop(net.ErrClosed)
	}
	if err != nil && c.raw.PeerClosed() && !c.wroteAfterPeerClose.Load() &&
		errors.Is(err, stanza.Error{Condition: stanza.ItemNotFound}) {
		return nil
	}
	return err
}

// CloseWrite sends a TLS close_notify and closes our direction of the
// tunnel; the peer's direction stays readable.
func (c *Conn) CloseWrite() error {
	if err := c.tls.CloseWrite(); err != nil {
		return err
	}
	return c.raw.Conn.CloseWrite()
}

// LocalAddr returns our full JID (network "xmpp").
func (c *Conn) LocalAddr() net.Addr { return c.raw.LocalAddr() }

// RemoteAddr returns the peer's full JID (network "xmpp").
func (c *Conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

// SetDeadline sets the read and write deadlines. A TLS write that times out
// leaves the TLS connection unusable (as with crypto/tls over TCP).
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.tls.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	if c.framed() {
		c.demux.setDeadline(t)
		return nil
	}
	return c.tls.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.tls.SetWriteDeadline(t) }

// ConnectionState returns crypto/tls's view of the connection.
func (c *Conn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// Abort ends the tunnel at once, both directions, without a TLS
// close_notify, and tells the peer why: one of xtls/stanza's Reason
// constants (ReasonShutdown when the program quits on a signal, say) or
// another token of [a-z0-9-]. The peer's Read and Write fail with a
// *transport.AbortError that says it in words ("the peer aborted the
// tunnel: it is shutting down"). Use Close for an orderly end.
func (c *Conn) Abort(why string) {
	cond := stanza.UndefinedCondition
	if why == xstanza.ReasonShutdown {
		cond = stanza.Gone
	}
	c.raw.Conn.AbortBecause(cond, why, "aborted by the application: "+why)
}

// Tunnel returns the transport tunnel under the TLS connection; writing to
// it directly would corrupt the TLS stream.
func (c *Conn) Tunnel() *transport.Conn { return c.raw.Conn }
