package cli

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/transport"
	"github.com/xmppxtls/xtls/xtls"
)

// Exit statuses, the same in every program.
const (
	ExitOK          = 0   // done
	ExitOther       = 1   // another failure (a local file, say)
	ExitUsage       = 2   // bad flags or arguments, or a profile that cannot be read
	ExitLogin       = 3   // logging in failed: unreachable, not XMPP, timeout, certificate, password
	ExitPeer        = 4   // the peer is offline, has no XTLS, refused us, or declined
	ExitTrust       = 5   // the peer is not trusted, or does not trust us: key changed, pairing failed
	ExitBroken      = 6   // the connection broke: lost, cut short, or what came is corrupt
	ExitPeerAborted = 7   // the peer aborted: it was interrupted, or gave up
	ExitInterrupted = 130 // we were interrupted: Ctrl-C, SIGTERM or SIGHUP
)

// ExitDoc is the exit status table that every program's documentation
// shows.
const ExitDoc = `	0    done
	1    another failure (a local file, say)
	2    bad usage: flags, arguments, profile
	3    logging in failed: server unreachable or not XMPP, -timeout
	     passed, its certificate did not verify, wrong password
	4    the peer is offline, does not speak XTLS, refused us or declined
	5    trust: the peer's key changed, pairing failed, it refused ours,
	     or a possible downgrade (a pinned peer answered as if it had no
	     XTLS: never fall back to anything unencrypted)
	6    the connection broke: lost, cut short, or corrupt data
	7    the peer aborted (it was interrupted, or gave up)
	130  interrupted here (Ctrl-C, SIGTERM, SIGHUP)`

// Failure is an error that decides the exit status.
type Failure struct {
	Code int
	Err  error
}

// Error implements error.
func (f *Failure) Error() string { return f.Err.Error() }

// Unwrap returns the cause.
func (f *Failure) Unwrap() error { return f.Err }

// Fail returns a *Failure with the message format, a.
func Fail(code int, format string, a ...any) error {
	return &Failure{Code: code, Err: fmt.Errorf(format, a...)}
}

// Code returns the exit status err deserves: a *Failure's own, ExitBroken
// for a *ReconnectError, ExitLogin for a *LoginError, else ExitOther.
func Code(err error) int {
	var f *Failure
	var l *LoginError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &f):
		return f.Code
	case errors.As(err, new(*ReconnectError)):
		return ExitBroken
	case errors.As(err, &l):
		return ExitLogin
	}
	return ExitOther
}

// DialFailure explains a failed Dial to peer and gives it its exit
// status. o names the state for the commands it suggests.
func DialFailure(err error, peer jid.JID, o *Options) error {
	var (
		pin  *xtls.PinMismatchError
		pair *xtls.PairingError
		id   *xtls.IdentityError
		exp  *xtls.CertificateExpiredError
		pol  *xtls.PolicyError
	)
	switch {
	case errors.As(err, &pin):
		return &Failure{ExitTrust, errors.New(KeyChangeMessage(pin, o))}
	case errors.As(err, &pair):
		return Fail(ExitTrust, "%s", PairingMessage(pair))
	case errors.Is(err, xtls.ErrDowngrade):
		return &Failure{ExitTrust, err} // it says not to fall back
	case errors.Is(err, xtls.ErrRefused):
		return Fail(ExitPeer, "%s refused the tunnel: is the program listening there, and are we allowed? (%v)", peer, err)
	case errors.Is(err, xtls.ErrPeerUnavailable):
		return Fail(ExitPeer, "%s is not online (is the full JID right, resource included?)", peer)
	case errors.Is(err, xtls.ErrNotSupported):
		return Fail(ExitPeer, "%s does not speak XTLS", peer)
	case RefusedOurKey(err):
		return Fail(ExitTrust, "%s refused our key: if it has another key of ours pinned, its user must accept ours (xtls-pins accept), or pair again", peer.Bare())
	case errors.Is(err, xtls.ErrUntrusted), errors.As(err, &id), errors.As(err, &exp), errors.As(err, &pol):
		return &Failure{ExitTrust, err}
	}
	return &Failure{ExitPeer, err}
}

// StreamFailure explains an error reading or writing a tunnel: the peer
// aborted (ExitPeerAborted), or the connection broke (ExitBroken).
func StreamFailure(err error, peer jid.JID) error {
	var ab *transport.AbortError
	if errors.As(err, &ab) && ab.Remote {
		if ab.Why != "" {
			// The error says why in words: "the peer aborted the tunnel:
			// it is shutting down (gone)".
			return Fail(ExitPeerAborted, "%s: %v", peer.Bare(), err)
		}
		return Fail(ExitPeerAborted, "%s aborted (%s)", peer.Bare(), ab.Condition)
	}
	if errors.Is(err, transport.ErrNotReattached) {
		within := ""
		if d := (*transport.DetachedError)(nil); errors.As(err, &d) {
			within = fmt.Sprintf(" within %v", d.For)
		}
		if errors.Is(err, transport.ErrPeerGone) {
			return Fail(ExitBroken, "%s lost its connection and did not come back%s", peer.Bare(), within)
		}
		return Fail(ExitBroken, "the connection to the server was lost and the tunnel with %s was not resumed%s", peer.Bare(), within)
	}
	if errors.Is(err, transport.ErrPeerGone) {
		// Its network or its program is gone without a word: the
		// connection broke.
		return Fail(ExitBroken, "%s went away: %v", peer.Bare(), err)
	}
	if errors.Is(err, transport.ErrPeerClosed) {
		return Fail(ExitPeerAborted, "%s closed the connection: %v", peer.Bare(), err)
	}
	if errors.Is(err, xtls.ErrTruncated) {
		return Fail(ExitBroken, "the connection with %s was cut short (no TLS close_notify): what came may be incomplete", peer.Bare())
	}
	var pe *transport.PeerError
	if errors.As(err, &pe) && pe.Err.Condition == stanza.ItemNotFound {
		return Fail(ExitPeerAborted, "%s went away (%v)", peer.Bare(), err)
	}
	return Fail(ExitBroken, "the connection with %s broke: %v", peer.Bare(), err)
}

// KeyChangeMessage warns that the key of a pinned peer changed, and names
// the exact commands that accept the new key or forget the old one.
func KeyChangeMessage(e *xtls.PinMismatchError, o *Options) string {
	bare := e.Peer.Bare().String()
	var b strings.Builder
	fmt.Fprintf(&b, "WARNING: THE KEY OF %s HAS CHANGED\n", bare)
	for _, fp := range e.Pinned {
		fmt.Fprintf(&b, "  pinned:    %s\n", fp)
	}
	fmt.Fprintf(&b, "  presented: %s\n", e.Presented)
	fmt.Fprintf(&b, "Either %s made a new key (new device, reinstall), or someone is in the middle.\n", bare)
	fmt.Fprintf(&b, "Ask them, out of band, to read you their key. If it is the one presented, accept it:\n")
	fmt.Fprintf(&b, "  %s\n", PinsCommand(o, "accept", bare, e.Presented.String()))
	fmt.Fprintf(&b, "or forget their pinned key (the next contact is then a first contact):\n")
	fmt.Fprintf(&b, "  %s", PinsCommand(o, "remove", bare))
	return b.String()
}

// PinsCommand is the xtls-pins command line that does verb with args on
// the pins of o's account.
func PinsCommand(o *Options, verb string, args ...string) string {
	words := append([]string{"xtls-pins"}, o.StateFlags()...)
	return ShellCommand(append(append(words, verb), args...)...)
}

// RefusedOurKey reports whether err says that the peer rejected our
// certificate: its verdict (contract 3) or its TLS alert.
func RefusedOurKey(err error) bool {
	if errors.Is(err, xtls.ErrNotTrustedByPeer) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error" && strings.Contains(op.Err.Error(), "bad certificate")
}

// PairingTries is how many wrong codes xtls takes before it refuses the
// code (xtls.Config.PairingCode).
const PairingTries = 3

// PairingMessage says in words why pairing failed.
func PairingMessage(e *xtls.PairingError) string {
	bare := e.Peer.Bare()
	switch e.Reason {
	case xtls.PairingWrongCode:
		return fmt.Sprintf("pairing with %s failed: wrong code, the two sides used different codes; nothing was pinned", bare)
	case xtls.PairingCodeDead:
		return fmt.Sprintf("pairing with %s failed: the code is used up (it failed three times); make a new one", bare)
	case xtls.PairingNoCode:
		if e.Remote {
			return fmt.Sprintf("%s has no pairing code for us: it must be started with -pair", bare)
		}
		return fmt.Sprintf("%s wants to pair, and we have no code: start with -pair", bare)
	case xtls.PairingRequired:
		return fmt.Sprintf("%s is not pinned and the listener wants pairing: dial with -pair CODE", bare)
	}
	return e.Error()
}
