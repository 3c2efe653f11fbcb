// Package xtlstest provides an in-memory XMPP network for tests, demos and
// benchmarks, as net/http/httptest does for HTTP.
//
// A Network hands out real, bound mellium sessions for full JIDs. Each one
// runs over a buffered, asynchronous in-memory connection (never net.Pipe,
// which deadlocks two sessions that send to each other at once) to a router
// that behaves like a server: it stamps 'from' with the sender's full JID,
// delivers by 'to', answers IQ requests to addresses that are not connected
// with service-unavailable, and keeps the order of the stanzas between two
// sessions. It routes presence as a server does for contacts, who are
// named with Contacts or AllContacts: broadcasts, initial presence and the
// stored presence of the contacts in answer, unavailable presence for a
// session that ends. Faults are injected deterministically: Latency, Drop,
// WaitErrors, Duplicate, Reorder, Bandwidth and MaxStanzaSize, selected with
// a FaultFilter, observed with Trace, redirected with Intercept, and changed
// while the network runs with SetFaults. Everything blocks on channels and
// timers only, so a Network works inside a testing/synctest bubble, where
// latencies and bandwidth limits take fake time.
//
// Proxy65 gives the server of a domain a SOCKS5 bytestream proxy
// (XEP-0065), proxy.<domain>, found and activated as on Prosody or
// ejabberd, that relays real TCP connections on 127.0.0.1. Its faults are
// Proxy.Cut, CutAfter and ProxyTamper (cut, corrupt or replay the relayed
// bytes), and Proxy.Dial with ProxyOnConnect (a third party that takes an
// end's place). Being real sockets, they do not belong in a synctest
// bubble.
//
// A test connects two sessions and lets them talk:
//
//	n := xtlstest.NewNetwork(xtlstest.Latency(50*time.Millisecond, 0))
//	defer n.Close()
//	alice, err := n.Session(ctx, jid.MustParse("alice@example.net/a"))
//	…
//	bob, err := n.Session(ctx, jid.MustParse("bob@example.net/b"))
//	…
//	go alice.Serve(nil)
//	go bob.Serve(mux.New(stanza.NSClient, ping.Handle()))
//	err = ping.Send(ctx, alice, bob.LocalAddr()) // takes 100 ms
//
// The network side of a session is not a mellium Session: it never answers
// an IQ on behalf of a client, and it forwards every stanza as the client
// serialized it, rewriting only the start tag. It checks the structure of
// what it forwards (well-formed, properly nested tags; no comments,
// processing instructions or DTDs) and closes the stream of a client that
// breaks it with the proper stream error, but leaves the checking of text to
// the receiving session. Each session takes two goroutines of the network:
// one reads and routes what the client sends and never waits for another
// session, the other writes to the client what is due, so no cycle of
// blocked writers can form however the sessions send to each other.
package xtlstest // import "github.com/xmppxtls/xtls/xtls/xtlstest"
