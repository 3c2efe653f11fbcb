package cli

import (
	"fmt"

	"github.com/xmppxtls/xtls/xtls"
)

// PathNote says, for a status line, which path carried the tunnel: "over
// IQs" if it stayed there, else how much went through a bytestream (a
// SOCKS5 bytestream through a server's proxy, XEP-0065, where the
// servers' client limits do not apply) and through which proxy.
func PathNote(c *xtls.Conn) string {
	p := c.Path()
	if p.Moves == 0 {
		return "over IQs"
	}
	s := fmt.Sprintf("%s of it through a bytestream", Size(max(p.SentOnBytestream, p.ReceivedOnBytestream)))
	if p.Bytestream {
		s += " (proxy " + p.Proxy.String() + ")"
	}
	if p.Fallbacks > 0 {
		s += fmt.Sprintf(", which broke %d time(s): the rest went over IQs", p.Fallbacks)
	}
	return s
}
