package xtls

import (
	"fmt"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
)

// Failed handshakes count against their peer (a bare JID: its resources
// share the count). After backoffThreshold failures within backoffWindow the
// peer's starts are refused with resource-constraint (wait), before any TLS
// work, for a back-off that starts at backoffMin and doubles with each
// further back-off up to backoffMax: after a back-off, a single failure
// starts the next one. A successful handshake forgets the peer's failures,
// and so does backoffQuiet without a failure after the last back-off ended.
const (
	backoffThreshold = 3
	backoffWindow    = 30 * time.Second
	backoffMin       = 5 * time.Second
	backoffMax       = 5 * time.Minute
	backoffQuiet     = 5 * time.Minute

	// maxFailRecords bounds the peers whose failures are remembered; when
	// it is reached the record that has been quiet longest is dropped.
	maxFailRecords = 4096
)

// BackoffError is what Config.AcceptFailed and the log receive, instead of
// one report per attempt, when a peer's failed handshakes start a back-off:
// for the duration For its starts are refused with resource-constraint
// (wait) and not reported. It unwraps to the last failure.
type BackoffError struct {
	// Peer is the bare JID whose handshakes failed.
	Peer jid.JID
	// Failures counts the failed handshakes since the last report,
	// including those that were in progress during the last back-off.
	Failures int
	// For is how long the peer's starts are refused.
	For time.Duration
	// Last is the last failure (a *PinMismatchError, *PairingError, a TLS
	// error, context.DeadlineExceeded for a handshake that timed out, ...).
	Last error
}

func (e *BackoffError) Error() string {
	return fmt.Sprintf("xtls: %d failed handshakes from %s: its tunnels are refused for %s (last: %v)",
		e.Failures, e.Peer, e.For, e.Last)
}

// Unwrap returns the last failure.
func (e *BackoffError) Unwrap() error { return e.Last }

// failures tracks the failed handshakes of each peer.
type failures struct {
	mu    sync.Mutex
	peers map[string]*failRecord // by bare JID
}

type failRecord struct {
	first time.Time // start of the current window of failures
	n     int       // failures since first, or since the last report
	level int       // back-offs so far
	until time.Time // end of the current (or last) back-off
	last  time.Time // last failure (eviction)
}

// refused reports whether the bare JID's starts are refused at now.
func (f *failures) refused(bare string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.peers[bare]
	return r != nil && now.Before(r.until)
}

// failed records a failed handshake of peer at now and returns what to
// report: err itself below the threshold, a *BackoffError when a back-off
// starts, nil while one runs (the failure is counted for the next report).
func (f *failures) failed(peer jid.JID, now time.Time, err error) error {
	bare := peer.Bare()
	key := bare.String()
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.peers[key]
	if r == nil {
		if f.peers == nil {
			f.peers = make(map[string]*failRecord)
		}
		if len(f.peers) >= maxFailRecords {
			f.evict()
		}
		r = &failRecord{}
		f.peers[key] = r
	}
	r.last = now
	if now.Before(r.until) {
		r.n++
		return nil
	}
	if r.level > 0 && now.Sub(r.until) >= backoffQuiet {
		*r = failRecord{last: now}
	}
	if r.level == 0 && (r.n == 0 || now.Sub(r.first) > backoffWindow) {
		r.first, r.n = now, 0
	}
	r.n++
	if r.level == 0 && r.n < backoffThreshold {
		return err
	}
	d := min(backoffMin<<min(r.level, 16), backoffMax)
	r.level++
	r.until = now.Add(d)
	n := r.n
	r.n = 0
	return &BackoffError{Peer: bare, Failures: n, For: d, Last: err}
}

// succeeded forgets the failures of the bare JID.
func (f *failures) succeeded(bare string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.peers, bare)
}

// evict drops the record that has been quiet longest (a record in
// back-off counts as active until the back-off ends), under f.mu.
func (f *failures) evict() {
	var (
		oldest string
		at     time.Time
	)
	for k, r := range f.peers {
		t := r.last
		if r.until.After(t) {
			t = r.until
		}
		if oldest == "" || t.Before(at) {
			oldest, at = k, t
		}
	}
	delete(f.peers, oldest)
}
