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
package xtls // import "github.com/xmppxtls/xtls/xtls"

import xstanza "github.com/xmppxtls/xtls/stanza"

// NS is the XTLS namespace, also the disco#info feature a Handler
// advertises.
const NS = xstanza.NS
