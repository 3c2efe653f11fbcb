package xtlstest

import (
	"errors"
	"io"
	"net"
	"time"

	"github.com/xmppxtls/xtls/internal/socks5"
)

// proxySlot is a bytestream of a Proxy: the connections to one DST.ADDR.
// Its fields are guarded by the proxy's mutex, but for the channels, each
// closed once, and act, set before active is closed.
type proxySlot struct {
	dst      string
	conns    [2]*net.TCPConn // the target's, then the requester's
	n        int             // connections taken
	deadline time.Time       // for the activation
	halves   int             // directions whose sender closed its side

	replied   [2]chan struct{} // closed once the proxy answered conns[i]
	active    chan struct{}    // closed by the activation
	gone      chan struct{}    // closed when the bytestream ends
	act       Activation
	activated bool
	ended     bool
}

// serveConn runs one connection of the proxy: its SOCKS5 handshake, the
// wait for the activation, and then one direction of the relay (from this
// connection to the other).
func (p *Proxy) serveConn(c *net.TCPConn) {
	sl, role, ok := p.handshake(c)
	if ok {
		ok = p.await(sl)
	}
	p.mu.Lock()
	p.pending--
	p.mu.Unlock()
	if ok {
		p.relay(sl, role)
	}
}

// await waits for the activation of sl and reports whether it came. If
// the deadline passes first, it ends sl.
func (p *Proxy) await(sl *proxySlot) bool {
	timer := time.NewTimer(time.Until(sl.deadline))
	defer timer.Stop()
	select {
	case <-sl.active:
		return true
	case <-sl.gone:
		return false
	case <-timer.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if sl.activated { // meanwhile
		return true
	}
	if !sl.ended {
		p.stats.Expired += int64(sl.n)
		p.endLocked(sl)
	}
	return false
}

// handshake answers the SOCKS5 handshake of c and gives it its place in a
// bytestream: role 0 for the target, 1 for the requester. If it fails (ok
// is false), c is closed.
func (p *Proxy) handshake(c *net.TCPConn) (sl *proxySlot, role int, ok bool) {
	c.SetDeadline(time.Now().Add(p.cfg.handshake))
	host, port, err := socks5.ReadRequest(c)
	code := socks5.ReplySucceeded
	switch {
	case err != nil:
	case port != 0 || !isSHA1Hex(host):
		code = socks5.ReplyHostUnreachable
	default:
		sl, role, code = p.take(host, c)
	}
	if sl != nil {
		if p.cfg.onConnect != nil {
			p.cfg.onConnect(host, role+1)
		}
		// Nothing is relayed to c before its reply.
		defer close(sl.replied[role])
	}
	if err == nil {
		err = socks5.WriteReply(c, code, host, port)
	}
	if err == nil && sl != nil {
		err = c.SetDeadline(time.Time{})
	}
	p.mu.Lock()
	if sl != nil {
		ok = err == nil && !sl.ended
		if !ok {
			p.endLocked(sl) // it failed after taking its place
		}
		p.mu.Unlock()
		return sl, role, ok
	}
	p.stats.Refused++
	p.mu.Unlock()
	lingerClose(c)
	p.mu.Lock()
	p.dropLocked(c)
	p.mu.Unlock()
	return nil, 0, false
}

// lingerClose closes the sending side of c and reads what the client still
// sends, up to a limit or c's deadline, so that closing c does not reset the
// connection and lose the proxy's last answer.
func lingerClose(c *net.TCPConn) {
	c.CloseWrite()
	io.Copy(io.Discard, io.LimitReader(c, 4096))
}

// take gives c the next place in the bytestream dst, or says why not.
func (p *Proxy) take(dst string, c *net.TCPConn) (*proxySlot, int, byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sl := p.slots[dst]
	switch {
	case p.closed:
		return nil, 0, socks5.ReplyGeneralFailure
	case sl == nil:
		sl = &proxySlot{
			dst:      dst,
			deadline: time.Now().Add(p.cfg.activation),
			replied:  [2]chan struct{}{make(chan struct{}), make(chan struct{})},
			active:   make(chan struct{}),
			gone:     make(chan struct{}),
		}
		p.slots[dst] = sl
	case sl.n == len(sl.conns) || sl.activated:
		return nil, 0, socks5.ReplyNotAllowed
	}
	role := sl.n
	sl.conns[role] = c
	sl.n++
	return sl, role, socks5.ReplySucceeded
}

// activate joins the two connections of the bytestream act, at the
// requester's request. It returns the condition of the IQ error to answer,
// or "" on success.
func (p *Proxy) activate(act Activation) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	sl := p.slots[act.DstAddr]
	switch {
	case sl == nil:
		return "item-not-found"
	case sl.activated:
		return "conflict"
	case sl.n < len(sl.conns):
		return "not-allowed"
	}
	sl.act = act
	sl.activated = true
	p.stats.Activated++
	close(sl.active)
	return ""
}

// relay forwards what the connection of role reads to the other one, until
// the bytestream ends.
func (p *Proxy) relay(sl *proxySlot, role int) {
	src, dst := sl.conns[role], sl.conns[1-role]
	select {
	case <-sl.replied[1-role]:
	case <-sl.gone:
		return
	}
	buf := make([]byte, 32<<10)
	var offset int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			out, cut := buf[:n], false
			if p.cfg.tamper != nil {
				out, cut = p.cfg.tamper(Chunk{Stream: sl.act, FromRequester: role == 1, Offset: offset, Data: buf[:n]})
			}
			offset += int64(n)
			if _, werr := dst.Write(out); werr != nil {
				err = werr
			}
			p.mu.Lock()
			p.stats.Relayed += int64(len(out))
			if cut && !sl.ended {
				p.stats.Cut++
				p.endLocked(sl)
			}
			p.mu.Unlock()
			if cut {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			// Pass the half close on; the bytestream ends when both
			// ends have closed their side.
			dst.CloseWrite()
			p.mu.Lock()
			if sl.halves++; sl.halves == 2 {
				p.endLocked(sl)
			}
			p.mu.Unlock()
			return
		}
		if err != nil {
			p.mu.Lock()
			p.endLocked(sl)
			p.mu.Unlock()
			return
		}
	}
}

// endLocked ends the bytestream sl: it closes its connections and frees its
// DST.ADDR. The caller holds p.mu.
func (p *Proxy) endLocked(sl *proxySlot) {
	if sl.ended {
		return
	}
	sl.ended = true
	close(sl.gone)
	for _, c := range sl.conns[:sl.n] {
		p.dropLocked(c)
	}
	if p.slots[sl.dst] == sl {
		delete(p.slots, sl.dst)
	}
}

// dropLocked closes c. The caller holds p.mu.
func (p *Proxy) dropLocked(c *net.TCPConn) {
	c.Close()
	delete(p.conns, c)
}

// isSHA1Hex reports whether s is a SHA-1 in lowercase hexadecimal, as
// XEP-0065's DST.ADDR.
func isSHA1Hex(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
