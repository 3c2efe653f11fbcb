package xtlstest

import (
	"time"

	"mellium.im/xmpp/jid"
)

// ReorderTimeout is how long Reorder holds a stanza back at most when no
// other stanza follows it on the same link.
const ReorderTimeout = 20 * time.Millisecond

// CloseTimeout is how long the network waits, after it has closed a stream,
// for the client to close its own stream (as RFC 6120 §4.4 asks) before it
// closes the connection anyway.
const CloseTimeout = 2 * time.Second

// Stanza describes a stanza routed by a Network.
// It is given to the FaultFilter, Trace and Intercept functions.
type Stanza struct {
	// From is the sender as delivered: the full JID of the sending session,
	// or the address it wrote if that session was made with Spoofing.
	From jid.JID
	// Sender is the full JID of the session that sent the stanza. It
	// differs from From only for a session made with Spoofing.
	Sender jid.JID
	// To is the value of the 'to' attribute; the zero JID if there was none
	// or if it is not a valid address.
	To jid.JID
	// Name is the local name of the element: "iq", "message" or "presence".
	Name string
	// Type and ID are the values of the 'type' and 'id' attributes.
	Type, ID string
	// Raw is the serialized stanza as it is delivered, 'from' included.
	// It is valid only during the call and must not be modified.
	Raw []byte
}

// IsRequest reports whether s is an IQ of type get or set, the only stanzas
// the network answers with an error when it does not deliver them.
func (s Stanza) IsRequest() bool {
	return s.Name == "iq" && (s.Type == "get" || s.Type == "set")
}

// An Option configures a Network. Options are given to NewNetwork, or to
// SetFaults to change them while the network runs.
type Option func(*config)

type config struct {
	seed              int64
	latency, jitter   time.Duration
	dup, reorder      float64
	drop, waitErr     float64
	bandwidth         int
	maxSize           int
	filter            func(Stanza) bool
	trace             func(Stanza)
	intercept         func(Stanza) (jid.JID, bool)
	c2sBuf            int
	serverName        string
	contacts          func(user, contact jid.JID) bool
	proxies           []proxySpec // to start: see Proxy65
	hasFaults         bool
	hasRandomDecision bool
}

// finish precomputes what the router checks on every stanza.
func (c *config) finish() {
	c.hasFaults = c.dup > 0 || c.reorder > 0 || c.drop > 0 || c.waitErr > 0
	c.hasRandomDecision = c.hasFaults || c.jitter > 0
}

// Seed sets the seed from which every link derives its own random source.
// Two networks with the same seed make the same fault decisions on a link
// (a pair of sending and receiving sessions) for the same sequence of stanzas
// on that link, whatever happens on other links. Given to SetFaults, it only
// affects links that carry their first stanza afterwards. The default is 1.
func Seed(seed int64) Option {
	return func(c *config) { c.seed = seed }
}

// Latency delays every stanza by fixed plus a uniformly random duration in
// [0, jitter) after the network has read it. The order of the stanzas on a
// link is kept: a stanza is never delivered before the one sent ahead of it
// on the same link, unless Reorder says so. Errors that the network itself
// returns to a sender are delayed by fixed.
func Latency(fixed, jitter time.Duration) Option {
	return func(c *config) { c.latency, c.jitter = max(fixed, 0), max(jitter, 0) }
}

// Duplicate delivers a stanza twice with probability p.
// Like the other faults, it applies only to stanzas that the FaultFilter
// selects.
func Duplicate(p float64) Option {
	return func(c *config) { c.dup = p }
}

// Reorder holds a stanza back with probability p and delivers it right after
// the next stanza on the same link, or after ReorderTimeout if none comes.
// The stanza that overtakes a held one is never held itself.
func Reorder(p float64) Option {
	return func(c *config) { c.reorder = p }
}

// Drop loses a stanza with probability p. The sender of a lost IQ get or set
// receives an IQ error of type wait with the condition remote-server-timeout,
// from the address the IQ was sent to and with its id, as a server would
// send when it cannot reach the recipient.
// Other stanzas are lost without a trace.
func Drop(p float64) Option {
	return func(c *config) { c.drop = p }
}

// WaitErrors bounces an IQ get or set with probability p: it is not delivered
// and its sender receives an IQ error of type wait with the condition
// resource-constraint, from the address the IQ was sent to.
// It does not apply to other stanzas.
func WaitErrors(p float64) Option {
	return func(c *config) { c.waitErr = p }
}

// Bandwidth limits what each session can send, as the c2s traffic shaper of
// a server does: the network forwards a stanza once its bytes (as sent by the
// client) have been paid for at bytesPerSecond, and reads nothing more from
// that session meanwhile, so a client that keeps sending soon blocks in
// Write. A stanza of n bytes sent on an idle session is forwarded n/rate after
// it was read; a burst of stanzas totalling N bytes is through after N/rate,
// computed exactly (in nanoseconds, rounded down). A pause shorter than 5 ms
// does not end a burst, so a timer that fires late does not slow the pace.
// Zero or less means unlimited, the default.
func Bandwidth(bytesPerSecond int) Option {
	return func(c *config) { c.bandwidth = max(bytesPerSecond, 0) }
}

// MaxStanzaSize makes a stanza larger than n bytes (as serialized by the
// client) a policy violation, as in Prosody and ejabberd: the network sends
// the sender the stream error policy-violation with the text
// "XML stanza is too big" and closes its session.
// Zero or less means unlimited, the default.
func MaxStanzaSize(n int) Option {
	return func(c *config) { c.maxSize = max(n, 0) }
}

// FaultFilter selects the stanzas to which Duplicate, Reorder, Drop and
// WaitErrors apply. By default they apply to IQs of type get or set only, so
// that results and errors pass untouched. Latency and Bandwidth apply to
// every stanza. A nil f restores the default.
//
// f is called for every stanza bound to a connected session, possibly
// from several goroutines at once; Raw is valid only during the call.
func FaultFilter(f func(s Stanza) bool) Option {
	return func(c *config) { c.filter = f }
}

// Trace calls f for every stanza the network reads from a session, after
// 'from' has been stamped and before it is routed. Calls are serialized.
// f must not block: the sending session is not read during the call.
// A nil f turns tracing off.
func Trace(f func(s Stanza)) Option {
	return func(c *config) { c.trace = f }
}

// Intercept lets f choose where a stanza goes: to the connected session
// deliverTo, unchanged (its 'to' attribute is not rewritten), or nowhere if
// ok is false. Returning s.To routes the stanza normally. If deliverTo is not
// a connected session the stanza is treated as bound to an offline address.
// With a session made with Spoofing, this builds a man in the middle.
//
// f is called for every stanza the network reads, possibly from several
// goroutines at once. A nil f turns interception off.
func Intercept(f func(s Stanza) (deliverTo jid.JID, ok bool)) Option {
	return func(c *config) { c.intercept = f }
}

// SendBuffer sets how many bytes a session may have written that the network
// has not read yet, like a socket's send buffer: past that, the session's
// writes block. The default is 256 KiB; zero or less means unlimited. It only
// affects sessions created afterwards. The network side of each session is
// never limited, so that a client that does not read cannot block the
// network.
//
// The connection honours deadlines as TCP does. mellium turns a context that
// ends during a send into a write deadline in the past: if the send was
// blocked on a full buffer, the stanza is cut, and the network closes the
// session with not-well-formed. Use a large buffer, or contexts that do not
// end during sends, when that is not what a test is about.
func SendBuffer(n int) Option {
	return func(c *config) { c.c2sBuf = max(n, 0) }
}

// ServerName makes the network answer a disco#info query addressed to the
// server (to its domain, or with no 'to') with the identity of an XMPP
// server of that name (category server, type im), as Prosody ("Prosody")
// and ejabberd ("ejabberd") do; the query is answered after the Latency.
// xtls's Handler reads it to choose its chunk size. By default, and with an
// empty name, the server offers no service: such a query is answered
// service-unavailable.
func ServerName(name string) Option {
	return func(c *config) { c.serverName = name }
}

func defaultConfig() config {
	return config{seed: 1, c2sBuf: 256 << 10}
}

// A SessionOption configures one session of a Network.
type SessionOption func(*sessionConfig)

type sessionConfig struct {
	spoofing bool
}

// Spoofing makes the network trust the 'from' attribute written by this
// session: a non-empty 'from' is delivered as is instead of being replaced by
// the session's address. It stands for a malicious server or an injector in
// adversarial tests.
func Spoofing() SessionOption {
	return func(c *sessionConfig) { c.spoofing = true }
}
