// Package xtls runs standard TLS end to end between two XMPP entities that
// already have client-to-server sessions: the TLS records travel as Base64
// chunks inside IQ stanzas (see package transport), so the servers in
// between route them but can neither read nor alter them.
//
// A Handler serves one mellium session. Register it in the session's mux
// (with disco, to advertise the feature), then Dial a peer's full JID, or
// its bare JID if it is a contact, or Listen for tunnels the peer opens:
//
//	h := xtls.NewHandler(session, &xtls.Config{
//		Certificate:     cert, // from xtls.GenerateCertificate
//		Pins:            pins, // e.g. xtls.NewFilePinStore(path)
//		TrustOnFirstUse: true,
//	})
//	go session.Serve(mux.New(stanza.NSClient, disco.Handle(), h.Handle()))
//
//	h.SendPresence(ctx, stanza.Presence{}, nil) // available, with caps (XEP-0115)
//
//	conn, err := h.Dial(ctx, bob) // bob@example.org/laptop, or bob@example.org
//	// conn is a TLS connection: Read, Write, Close, deadlines;
//	// conn.State() says who is on the other end and how that was decided.
//
// For a bare JID, Dial picks among the resources whose presence the
// session received (see Resolve): those that advertise XTLS in their
// entity capabilities or disco#info, by presence priority, then recency.
// With none it fails with ErrPeerOffline or ErrNoXTLSClient.
//
// The initiator of a tunnel is the TLS client and the responder the TLS
// server; the responder requires a client certificate, so both ends are
// authenticated. Each certificate must name its owner's bare JID in an
// id-on-xmppAddr subjectAltName (GenerateCertificate makes such
// certificates). Trust is decided in this order, any one sufficing: a PKIX
// chain to Config.RootCAs; a fingerprint pinned for the peer's bare JID in
// Config.Pins; first use, when Config.TrustOnFirstUse is set (the key is
// then pinned); pairing with a short code (Config.PairingCode,
// WithPairingCode: a PAKE run inside the TLS connection and bound to it,
// after which both ends pin each other, TrustPaired); the application's
// Config.VerifyPeer. A pinned peer that presents another key fails with a
// *PinMismatchError unless Config.AcceptKeyChange accepts it (or the two
// pair again). A person's own CA (NewUserCA) that signed the peer's
// certificate and names the same bare JID is pinned instead of the device's
// key, so the person's other devices and renewed certificates are trusted
// without pairing again. Dial returns only once the peer has accepted our
// certificate as well: the responder sends its verdict inside TLS, and a
// refusal is a *NotTrustedByPeerError (docs/protocol.md, contract 3).
//
// No tuning is needed: the transport's windows adapt to the path, and the
// size of the chunks follows the server. Beside its first Dial or accepted
// handshake a Handler asks its own server's disco#info identity once and
// sends smaller chunks (2880 bytes) through Prosody, whose 4096-byte reads
// stall on larger stanzas (see Handler.ChunkSize and
// transport.Config.ChunkSize).
//
// TLS policy: TLS 1.3 preferred and 1.2 at least; with 1.2 only ECDHE key
// exchange with AES-GCM or ChaCha20-Poly1305; no renegotiation. Go's default
// key exchange groups are kept, so two Go peers negotiate the hybrid
// post-quantum X25519MLKEM768, which protects recorded traffic against later
// decryption; State reports the group. Nothing in the API sends
// application data outside TLS, and a responder tears down a tunnel whose
// first byte is not a TLS handshake record.
//
// # Limits
//
// Anyone on the XMPP network can open a tunnel to a Handler that listens,
// and with TrustOnFirstUse anyone can complete a handshake, so what one
// peer (a bare JID: all its resources together) can make a Handler hold
// and spend is bounded. Each limit is a Config field (or a field of
// transport.Config, through Config.Transport); at a limit a peer's start
// is answered resource-constraint (wait), which its transport tries again
// for a few seconds, and the tunnels that exist keep working. A peer that
// Config.AcceptPeer refuses, or any peer while nobody listens, is answered
// not-acceptable (cancel) before any limit is looked at.
//
//   - transport.Config.MaxTunnels, 4096: tunnels of the session.
//   - transport.Config.MaxTunnelsPerPeer, 256: tunnels with one peer.
//   - transport.Config.MemoryBudget, 64 MiB: receive windows of all
//     tunnels, which bound what peers can make us buffer; a new tunnel's
//     window (transport.Config.Window, 128 KiB) comes out of it, and
//     auto-tuning (up to transport.Config.MaxWindow, 8 MiB) stops growing
//     windows when it is spent.
//   - transport.Config.PeerMemoryBudget, 16 MiB: the same for one peer.
//   - MaxPending, 128: tunnels peers opened that Accept has not taken yet,
//     handshaking or waiting.
//   - MaxPendingPerPeer, 32: the same for one peer.
//   - MaxHandshakesPerPeer, 16: handshakes of one peer in progress.
//   - HandshakeTimeout, 30 s: a handshake that takes longer is aborted
//     (policy-violation) and counts as a failure.
//   - Back-off: after 3 failed handshakes of a peer within 30 s its starts
//     are refused for 5 s, twice as long at each further back-off (then a
//     single failure starts it) up to 5 minutes, until a handshake
//     succeeds or 5 minutes pass without failure after a back-off. The
//     refusal costs no TLS work.
//
// A failed handshake frees its slots at once: the peer gets the TLS alert
// or verdict that says why, then an abort (policy-violation), not a
// graceful close that would keep the slot. Config.AcceptFailed and the log
// hear of failures one by one until a back-off starts, then once per
// back-off (a *BackoffError with the count).
//
// # Downgrade
//
// A peer whose key is pinned (first use, pairing, or its person's CA) is
// known to speak XTLS. If Dial's start to it is answered as a client
// without XTLS answers (feature-not-implemented, or service-unavailable
// with a disco#info that lacks the feature), a server may be hiding XTLS
// from us: Dial returns a *DowngradeError (ErrDowngrade), which does not
// match ErrNotSupported. Never fall back to anything unencrypted then.
package xtls // import "github.com/xmppxtls/xtls/xtls"

import xstanza "github.com/xmppxtls/xtls/stanza"

// NS is the XTLS namespace, also the disco#info feature a Handler
// advertises.
const NS = xstanza.NS
