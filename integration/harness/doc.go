// Package harness runs real XMPP servers, Prosody 0.12 and ejabberd 23.01
// from the Debian packages, on 127.0.0.1 for the integration tests and the
// benchmark command.
//
// Each server runs in the foreground as a child process, in its own directory
// (configuration, certificates, data, logs), on its own ports, with a
// certificate issued by a test CA made in Go; nothing is written elsewhere
// and nothing listens on an address other than 127.0.0.1 (Erlang
// distribution included; no epmd runs). Clients connect the way a real client
// does, with STARTTLS and a verified certificate:
//
//	s := harness.StartProsodyT(t, harness.ProsodyOptions{})
//	harness.AddUserT(t, s, "alice", "secret")
//	alice := harness.ConnectT(t, s, "alice", "secret", handler)
//	// alice.LocalAddr() is the full JID the server bound.
//
// Servers start unlimited unless told otherwise: no rate limits and 10 MiB
// stanzas, to measure the server's own ceiling. Limits: StockLimits gives
// them the client limits of Debian's shipped configuration files instead
// (Prosody's mod_limits at 10 kB/s, ejabberd's 3000 B/s shaper), what users
// of a server as shipped get; [Server.C2SRate] says the rate. Proxy65 starts
// the server's SOCKS5 bytestream proxy (XEP-0065), which [Server.Proxy65]
// reports:
//
//	s := harness.StartEjabberdT(t, harness.EjabberdOptions{Limits: harness.StockLimits, Proxy65: true})
//	proxy, _ := s.Proxy65() // proxy.JID, proxy.Addr()
//
// Outside tests use [StartProsody], [StartEjabberd] or [StartFederated],
// [Server.AddUser] and [Server.Connect], and call [Server.Close] when done.
// A server that cannot start is an error (a test fails; it never skips).
//
// Both servers' packages must be installed (scripts/install-deps.sh);
// the harness starts them as the current user, root included.
package harness
