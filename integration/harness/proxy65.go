package harness

import (
	"fmt"
	"net"
	"strconv"

	"mellium.im/xmpp/jid"
)

// Proxy65 is a server's SOCKS5 bytestream proxy (XEP-0065): Prosody's
// proxy65 component or ejabberd's mod_proxy65, started when
// [ProsodyOptions].Proxy65 or [EjabberdOptions].Proxy65 is set. Clients of
// the server find it in the server's disco#items (identity
// proxy/bytestreams), ask it for its streamhost, connect to Addr with SOCKS5
// and activate the bytestream with an IQ to JID.
//
// The proxy relays raw TCP: neither server applies its c2s limits to it
// (mod_limits shapes c2s and s2s sessions only; mod_proxy65's own shaper
// defaults to none), StockLimits included.
//
// Prosody 0.12's proxy65 holds back the tail of a burst: after more than
// 4 KiB arrive at once, up to 4096 bytes stay in Prosody until the sender
// sends again or closes its side (net.server_epoll's link() resumes reading
// without looking at what LuaSocket has buffered). ejabberd relays every
// byte at once. A protocol over the bytestream must not wait for the last
// bytes of a burst before it sends anything else.
type Proxy65 struct {
	// JID is the proxy's address, "proxy.<domain>".
	JID jid.JID
	// Host and Port are where it accepts SOCKS5 connections: 127.0.0.1 and
	// a port of its own. They are also what its streamhost answer
	// announces.
	Host string
	Port int
}

// Addr returns "host:port", for net.Dial.
func (p Proxy65) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// Proxy65 returns the server's SOCKS5 bytestream proxy, and false if the
// server was started without one.
func (s *Server) Proxy65() (Proxy65, bool) {
	return s.proxy65, s.proxy65.Port != 0
}

// newProxy65 returns the proxy "proxy.<domain>" on 127.0.0.1:port.
func newProxy65(domain string, port int) (Proxy65, error) {
	j, err := jid.New("", proxyHost(domain), "")
	if err != nil {
		return Proxy65{}, fmt.Errorf("harness: proxy JID: %w", err)
	}
	return Proxy65{JID: j, Host: "127.0.0.1", Port: port}, nil
}

// proxyHost is the proxy's domain under the server's domain.
func proxyHost(domain string) string { return "proxy." + domain }
