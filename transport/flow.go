package transport

import (
	"fmt"
	"time"
)

// Flow control counts decoded payload bytes with absolute limits, as QUIC's
// MAX_STREAM_DATA does: a credit element says how many bytes the peer may
// have sent in total since the tunnel began, so it can be sent again without
// granting anything twice. These two types are pure accounting: no locks, no
// I/O. They are owned by their Conn and used under its mutex.

// sendFlow is the sender's view of the credit the peer granted.
type sendFlow struct {
	sent    uint64 // payload bytes sent so far (each block counted once)
	limit   uint64 // highest limit granted by the peer
	blocked uint64 // the limit at which newlyBlocked last reported true
}

// available returns how many more payload bytes may be sent.
func (f *sendFlow) available() uint64 {
	if f.sent >= f.limit {
		return 0
	}
	return f.limit - f.sent
}

// take records n bytes as sent. Taking more than is available is a bug.
func (f *sendFlow) take(n int) {
	if uint64(n) > f.available() {
		panic(fmt.Sprintf("transport: internal error: took %d bytes of credit, %d available", n, f.available()))
	}
	f.sent += uint64(n)
}

// raise applies a credit limit from the peer. A limit at or below one
// already received is ignored; raise reports whether the limit grew.
func (f *sendFlow) raise(limit uint64) bool {
	if limit <= f.limit {
		return false
	}
	f.limit = limit
	return true
}

// newlyBlocked reports true once per limit value when no credit is left:
// the moment to note that the peer is holding the sender back.
func (f *sendFlow) newlyBlocked() bool {
	if f.available() > 0 || f.blocked == f.limit && f.blocked != 0 {
		return false
	}
	f.blocked = f.limit
	return true
}

// recvFlow is the receiver's accounting: what it granted, what arrived and
// what the application has read.
type recvFlow struct {
	window   uint64 // bytes the receiver is willing to buffer unread
	limit    uint64 // highest limit sent to the peer (the window is the first)
	received uint64 // distinct payload bytes received, gaps included
	consumed uint64 // bytes the application has read

	// auto-tuning: the epoch is the time since the window last changed or
	// was last checked.
	maxWindow     uint64
	epochAt       time.Time
	epochConsumed uint64
}

func (f *recvFlow) init(window, maxWindow int) {
	f.window = uint64(window)
	f.limit = uint64(window)
	f.maxWindow = uint64(max(window, maxWindow))
}

// autoTune doubles the window, up to maxWindow, when the application read
// more than half a window in less than four round trips per window (the
// rule of quic-go's flow controller): then the window, not the reader, is
// what limits the peer. It starts a new epoch either way. Called when an
// update is about to be sent; rtt is this side's smoothed round trip (zero
// before any was measured: no tuning).
//
// grant, if not nil, is asked for the bytes a larger window adds (the
// receiver's memory budgets); without them the window stays.
func (f *recvFlow) autoTune(now time.Time, rtt time.Duration, grant func(more int) bool) {
	read := f.consumed - f.epochConsumed
	if f.epochAt.IsZero() || rtt <= 0 || read <= f.window/2 {
		if f.epochAt.IsZero() || rtt <= 0 {
			f.epochAt, f.epochConsumed = now, f.consumed
		}
		return
	}
	fraction := float64(read) / float64(f.window)
	if now.Sub(f.epochAt) < time.Duration(4*fraction*float64(rtt)) {
		if w := min(2*f.window, f.maxWindow); w > f.window && (grant == nil || grant(int(w-f.window))) {
			f.grow(w)
		}
	}
	f.epochAt, f.epochConsumed = now, f.consumed
}

// receive counts n bytes of a block received for the first time. It fails if
// the peer went beyond the limit it was granted.
func (f *recvFlow) receive(n int) error {
	if f.received+uint64(n) > f.limit {
		return fmt.Errorf("received %d bytes, allowed %d", f.received+uint64(n), f.limit)
	}
	f.received += uint64(n)
	return nil
}

// consume records n bytes read by the application.
func (f *recvFlow) consume(n int) {
	f.consumed += uint64(n)
	if f.consumed > f.received {
		panic("transport: internal error: consumed more than received")
	}
}

// update returns the new limit to announce, if one is due: once the
// application has read at least half a window since the last announcement,
// so that credit elements are batched and a slow reader stops the sender
// without any failure. The caller sends it and then calls sent.
func (f *recvFlow) update() (uint64, bool) {
	next := f.consumed + f.window
	if next < f.limit+f.window/2 {
		return 0, false
	}
	return next, true
}

// sent records that limit was announced; a limit counts from the moment it
// is sent.
func (f *recvFlow) sent(limit uint64) {
	if limit > f.limit {
		f.limit = limit
	}
}

// grow raises the window (auto-tuning); the larger window takes effect with
// the next announcement.
func (f *recvFlow) grow(window uint64) {
	if window > f.window {
		f.window = window
	}
}
