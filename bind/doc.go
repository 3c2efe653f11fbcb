// Package bind is a client's resource binding (RFC 6120 §7) that asks the
// server for the resource the user wants.
//
// mellium.im/xmpp v0.23.0's xmpp.BindResource means to request the
// resourcepart of the JID given to NewClientSession, but its request
// carries an empty <resource/>: bindPayload.TokenReader writes the payload's
// (empty) JID field where the requested resourcepart belongs. Servers then
// assign a random resource, so "bob@example.org/laptop" logs in as
// "bob@example.org/IIL8yjeqCcrv" and nobody can address it by the name the
// user chose.
//
// Resource is a stream feature to use instead of xmpp.BindResource. It
// sends the resourcepart it is given and reports what the server did with
// it:
//
//	s, err := xmpp.DialClientSession(ctx, addr.Bare(),
//		xmpp.StartTLS(tlsConfig),
//		xmpp.SASL("", password, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
//		bind.Resource("laptop"),
//	)
//	// s.LocalAddr() is bob@example.org/laptop, or err says why not.
//
// The resource is passed explicitly, so the JID given to mellium can be the
// bare one, which is what RFC 6120 §4.7.1 asks a client to put in its stream
// header; Resource(addr.Resourcepart()) requests the resourcepart of a full
// JID, as xmpp.BindResource means to. An empty resource asks the server to
// choose one.
//
// A server may refuse the requested resource (RFC 6120 §7.6.2 and §7.7.2):
// with a conflict because a session of the same account has bound it, with
// not-allowed by policy, or by binding another resource than the one
// requested. By default each is an *Error, and NewClientSession fails with
// it. With Fallback, a refusal is answered by binding again without a
// resource and the resource the server assigns is accepted; the caller reads
// it from the session's LocalAddr.
//
// What servers do when the resource is taken (checked with Prosody 0.12
// and ejabberd 23.01): as shipped, both bind it and end the older session
// that had it with the stream error conflict. Configured to refuse (Prosody's conflict_resolve =
// "kick_new", ejabberd's resource_conflict: closenew) they answer conflict;
// configured to rename (Prosody's "random" or "increment", which binds
// "name#1", ejabberd's setresource) they bind another resource.
//
// Resource is for clients only; on a server session it fails.
package bind // import "github.com/xmppxtls/xtls/bind"
