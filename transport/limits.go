package transport

import (
	"errors"
	"fmt"
	"time"
)

// What one Endpoint, and one peer, may take of the receiver's memory and
// tunnel slots. A peer is a bare JID: its resources share its limits.
//
// Memory is counted as the windows granted, which bound what a peer can
// make us buffer: every byte a peer sends must fit its credit, and the
// receive buffers hold what they hold within a small constant factor
// (readbuf.go, reorder.go). A tunnel's window comes out of the budgets
// when the tunnel is created and whenever auto-tuning grows it; it goes
// back when the tunnel is forgotten. At a limit a start is answered
// resource-constraint (wait), auto-tuning stops growing windows, and the
// tunnels that exist keep working.

// ErrLimit is matched by a *LimitError.
var ErrLimit = errors.New("xtls/transport: limit reached")

// LimitError reports a tunnel refused because one of this Endpoint's limits
// was reached (Open), as a peer's start beyond it is refused with
// resource-constraint.
type LimitError struct {
	// Limit names the Config field.
	Limit string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("xtls/transport: %s reached", e.Limit)
}

// Is matches ErrLimit.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// limits is the Endpoint's accounting, owned by the loop.
type limits struct {
	mem   int                 // window bytes granted, all tunnels
	peers map[string]*peerUse // by bare JID
}

type peerUse struct {
	tunnels int
	mem     int
	// heard is when an element from the peer last arrived, on any of its
	// tunnels: its stanzas are still coming out of its server's queue.
	heard time.Time
}

// peerHeard notes that an element from the peer bare arrived at now.
func (e *Endpoint) peerHeard(bare string, now time.Time) {
	if p := e.limits.peers[bare]; p != nil && now.After(p.heard) {
		p.heard = now
	}
}

// lastHeard returns when an element from the peer bare last arrived.
func (e *Endpoint) lastHeard(bare string) time.Time {
	if p := e.limits.peers[bare]; p != nil {
		return p.heard
	}
	return time.Time{}
}

// admit reserves a tunnel slot and a window for a tunnel with the peer
// bare: Config.Window, or what the budgets have left if that is less, but
// not less than minWindow. It returns the window, or says which limit is
// reached.
func (e *Endpoint) admit(bare string) (int, *LimitError) {
	l := &e.limits
	if l.peers == nil {
		l.peers = make(map[string]*peerUse)
	}
	p := l.peers[bare]
	if p == nil {
		p = &peerUse{}
	}
	w := min(e.cfg.Window, e.cfg.MemoryBudget-l.mem, e.cfg.PeerMemoryBudget-p.mem)
	switch {
	case len(e.tunnels) >= e.cfg.MaxTunnels:
		return 0, &LimitError{Limit: "MaxTunnels"}
	case p.tunnels >= e.cfg.MaxTunnelsPerPeer:
		return 0, &LimitError{Limit: "MaxTunnelsPerPeer"}
	case w < e.minWindow() && e.cfg.MemoryBudget-l.mem < e.cfg.PeerMemoryBudget-p.mem:
		return 0, &LimitError{Limit: "MemoryBudget"}
	case w < e.minWindow():
		return 0, &LimitError{Limit: "PeerMemoryBudget"}
	}
	l.peers[bare] = p
	p.tunnels++
	p.mem += w
	l.mem += w
	return w, nil
}

// minWindow is the smallest window a tunnel is given: at least a block,
// and enough for a handshake's flight.
func (e *Endpoint) minWindow() int { return max(e.cfg.BlockSize, min(e.cfg.Window, minWindow)) }

// minWindow bounds a new tunnel's window from below when the budgets are
// nearly spent.
const minWindow = 16 << 10

// grant reserves n more window bytes for a tunnel with the peer bare
// (auto-tuning), if both budgets have them.
func (e *Endpoint) grant(bare string, n int) bool {
	l := &e.limits
	p := l.peers[bare]
	if p == nil || l.mem+n > e.cfg.MemoryBudget || p.mem+n > e.cfg.PeerMemoryBudget {
		return false
	}
	p.mem += n
	l.mem += n
	return true
}

// release returns a forgotten tunnel's slot and window.
func (e *Endpoint) release(bare string, w int) {
	l := &e.limits
	p := l.peers[bare]
	if p == nil {
		return
	}
	p.tunnels--
	p.mem -= w
	l.mem -= w
	if p.tunnels <= 0 {
		delete(l.peers, bare)
	}
}
