package transport

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"mellium.im/xmpp/stanza"

	xstanza "github.com/xmppxtls/xtls/stanza"
)

// Errors returned by the transport. Errors that a peer or a server sent come
// back as they came: wrapped stanza.Error values, usable with errors.Is
// (mellium's stanza.Error.Is treats empty fields as wildcards, so
// errors.Is(err, stanza.Error{Condition: stanza.ItemNotFound}) works).
var (
	// ErrSessionClosed is returned when the XMPP session under the tunnels
	// has ended (its Serve loop returned or the Endpoint was closed).
	ErrSessionClosed = errors.New("xtls/transport: XMPP session closed")
	// ErrSIDInUse is returned by Dial when the pair of JIDs already has a
	// tunnel with that sid.
	ErrSIDInUse = errors.New("xtls/transport: sid in use")
	// ErrWriteClosed is returned by Write after CloseWrite.
	ErrWriteClosed = errors.New("xtls/transport: write after CloseWrite")
	// ErrNotFullJID is returned by Dial for a peer address without a
	// resourcepart: tunnels run between full JIDs.
	ErrNotFullJID = errors.New("xtls/transport: peer is not a full JID")
)

// AbortError reports a tunnel aborted with a close element carrying an error
// condition, by the peer (Remote) or by this side.
type AbortError struct {
	Condition stanza.Condition
	Remote    bool
	// Reason says why this side aborted, for our own logs (empty for a
	// remote abort).
	Reason string
	// Why is the reason the abort carried on the wire (the close
	// element's reason: xtls/stanza's Reason constants, or another
	// token), if any: the peer's for a remote abort, ours otherwise.
	Why string
}

func (e *AbortError) Error() string {
	if e.Remote {
		if e.Why != "" {
			return "xtls/transport: the peer aborted the tunnel: " + reasonText(e.Why) + " (" + string(e.Condition) + ")"
		}
		return "xtls/transport: tunnel aborted by peer: " + string(e.Condition)
	}
	s := "xtls/transport: tunnel aborted: " + string(e.Condition)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// reasonText puts an abort's reason in words, as the peer's.
func reasonText(why string) string {
	switch why {
	case xstanza.ReasonApplication:
		return "its application aborted"
	case xstanza.ReasonShutdown:
		return "it is shutting down"
	case xstanza.ReasonNotTrusted:
		return "it does not trust our certificate"
	case xstanza.ReasonPairingFailed:
		return "pairing failed"
	case xstanza.ReasonTimeout:
		return "it gave up waiting"
	case xstanza.ReasonPeerGone:
		return "it stopped hearing from us"
	}
	return "reason " + strconv.Quote(why)
}

// Is lets errors.Is match an AbortError against a stanza.Error with the same
// condition (an empty condition matches any).
func (e *AbortError) Is(target error) bool {
	se, ok := target.(stanza.Error)
	if !ok {
		return false
	}
	return se.Condition == "" || se.Condition == e.Condition
}

// ProtocolError reports a violation of the wire contract by the peer. The
// offending IQ was answered with bad-request (modify) and the tunnel torn
// down.
type ProtocolError struct {
	Reason string
}

func (e *ProtocolError) Error() string {
	return "xtls/transport: protocol violation by peer: " + e.Reason
}

// Is matches stanza.Error{Condition: bad-request}.
func (e *ProtocolError) Is(target error) bool {
	se, ok := target.(stanza.Error)
	return ok && (se.Condition == "" || se.Condition == stanza.BadRequest)
}

// PeerError reports an IQ error answering one of this tunnel's IQs: from the
// peer, or from a server on its behalf (recipient gone: service-unavailable).
// Err is the stanza.Error as it came.
type PeerError struct {
	Element string // the element the failed IQ carried: start, data, credit, close
	Err     stanza.Error
}

func (e *PeerError) Error() string {
	s := fmt.Sprintf("xtls/transport: %s rejected: %s", e.Element, e.Err.Condition)
	switch {
	case e.gone():
		s = fmt.Sprintf("xtls/transport: the peer went away (%s rejected: %s)", e.Element, e.Err.Condition)
	case e.closed():
		s = fmt.Sprintf("xtls/transport: the peer closed the tunnel (%s rejected: %s)", e.Element, e.Err.Condition)
	}
	if t := e.Err.Error(); t != string(e.Err.Condition) {
		s += " (" + t + ")"
	}
	return s
}

// gone reports whether the error says the peer is no longer there: its
// server answers for it that it is unavailable or unreachable.
func (e *PeerError) gone() bool {
	if e.Element == "start" {
		return false
	}
	switch e.Err.Condition {
	case stanza.ServiceUnavailable, stanza.RecipientUnavailable, stanza.RemoteServerNotFound, stanza.RemoteServerTimeout:
		return true
	}
	return false
}

// closed reports whether the error says the peer closed the tunnel and
// refuses what we send: item-not-found to an element of an open tunnel.
func (e *PeerError) closed() bool {
	return e.Element != "start" && e.Err.Condition == stanza.ItemNotFound
}

// Is matches ErrPeerGone when the peer's server answered that the peer is
// gone, and ErrPeerClosed when the peer refused an element of a tunnel it
// closed.
func (e *PeerError) Is(target error) bool {
	return target == ErrPeerGone && e.gone() || target == ErrPeerClosed && e.closed()
}

// Unwrap returns the stanza.Error.
func (e *PeerError) Unwrap() error { return e.Err }

// RetryError reports that an IQ found no answer after the bounded number of
// tries. Last is the cause of the last failure (a timeout, or a stanza.Error
// of type wait).
type RetryError struct {
	Element string
	Tries   int
	Last    error
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("xtls/transport: %s not acknowledged after %d tries: %v", e.Element, e.Tries, e.Last)
}

// Unwrap returns the last cause.
func (e *RetryError) Unwrap() error { return e.Last }

// ErrPeerGone is matched by the errors that say the peer is no longer
// there: it fell silent for longer than the keep-alive allows
// (*PeerGoneError), its presence became unavailable, or its server answers
// that it is unavailable or unreachable (a *PeerError).
var ErrPeerGone = errors.New("xtls/transport: the peer went away")

// ErrPeerClosed is matched by a *PeerError that says the peer closed the
// tunnel: it no longer reads, and refused what we sent with item-not-found.
var ErrPeerClosed = errors.New("xtls/transport: the peer closed the tunnel")

// PeerGoneError reports a tunnel whose peer went away without a word in
// the tunnel: it answered nothing for longer than Config.KeepAlive and
// KeepAliveTimeout together, or the application said it is gone
// (Endpoint.PeerGone: its presence became unavailable, say).
type PeerGoneError struct {
	// Why says how it was noticed.
	Why string
}

func (e *PeerGoneError) Error() string { return "xtls/transport: the peer went away: " + e.Why }

// Is matches ErrPeerGone.
func (e *PeerGoneError) Is(target error) bool { return target == ErrPeerGone }

// ErrAckTimeout is the cause recorded when an IQ's result does not come
// within the acknowledgement timeout.
var ErrAckTimeout = errors.New("xtls/transport: acknowledgement timeout")

// CrossedError is returned by an initiator's Conn whose start crossed a start
// with the same sid from the peer, and lost by the i;octet rule: the peer's
// tunnel is the one both sides use, and this side is its responder. Conn is
// that tunnel; use it instead (for TLS, as the server).
type CrossedError struct {
	Conn *Conn
}

func (e *CrossedError) Error() string {
	return "xtls/transport: simultaneous start with the same sid: the peer's tunnel was taken"
}

// timeoutError is returned when a deadline passes. Like a net.Conn's, it is a
// net.Error whose Timeout is true, and it wraps os.ErrDeadlineExceeded.
type timeoutError struct{}

func (timeoutError) Error() string   { return "xtls/transport: i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Unwrap() error   { return os.ErrDeadlineExceeded }

// ErrNotReattached is matched by a *DetachedError: the tunnel lost its path
// to the peer and was not re-attached within Config.Reattach.
var ErrNotReattached = errors.New("xtls/transport: the tunnel was not re-attached in time")

// DetachedError reports a tunnel that was suspended because its path to
// the peer was lost (our session ended, or the peer's), and that neither
// end re-attached within For. Cause is why it was suspended: errors.Is
// sees through it (ErrSessionClosed, ErrPeerGone).
type DetachedError struct {
	Cause error
	For   time.Duration
}

func (e *DetachedError) Error() string {
	return fmt.Sprintf("xtls/transport: the tunnel was not re-attached within %v: %v", e.For, e.Cause)
}

// Unwrap returns ErrNotReattached and the cause.
func (e *DetachedError) Unwrap() []error { return []error{ErrNotReattached, e.Cause} }

// ErrReattachRefused is matched by a *ReattachError.
var ErrReattachRefused = errors.New("xtls/transport: the peer refused the re-attachment")

// ReattachError reports that the peer refused our re-attach: it no longer
// holds the tunnel (item-not-found), or the proof did not verify
// (not-authorized). Err is its stanza.Error as it came.
type ReattachError struct {
	Err stanza.Error
}

func (e *ReattachError) Error() string {
	return "xtls/transport: the peer refused the re-attachment: " + string(e.Err.Condition)
}

// Unwrap returns ErrReattachRefused and the stanza.Error.
func (e *ReattachError) Unwrap() []error { return []error{ErrReattachRefused, e.Err} }
