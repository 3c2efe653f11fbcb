// Package sendctx guards against a trap of mellium.im/xmpp v0.23.0: every
// send (Send, SendIQ, disco.GetInfo, …) turns its context into a write
// deadline on the whole connection, set from a goroutine that starts with
// the send and may run after it has returned. A context that is already
// done when the send starts can therefore set a deadline in the past while
// the session's next write is under way, whoever makes it: that write fails
// with a timeout, possibly halfway through a stanza, and a TLS connection
// never writes again after a timeout (crypto/tls: "the TLS state is
// corrupt"). One cancelled disco query could end the whole XMPP session,
// and the tunnels on it.
//
// Check closes the common case, a context done before the send: call it
// just before handing ctx to any mellium call that writes. A context that
// ends during the microseconds of the write itself is still mellium's to
// handle. The transport never hands mellium a context at all: it writes
// through Session.TokenWriter.
package sendctx

import "context"

// Check returns ctx.Err(): nil when ctx may be handed to a mellium send.
func Check(ctx context.Context) error { return ctx.Err() }
