package cli

import (
	"errors"
	"flag"
	"fmt"

	"mellium.im/xmpp/jid"
)

// Command is what a networked example was asked to do: listen for a
// peer, or dial one.
type Command struct {
	// Self is the -jid account (a resource is optional; servers may
	// assign another).
	Self   jid.JID
	Listen bool
	// Peer is the full JID to dial (zero when listening).
	Peer jid.JID
}

// ParseCommand checks the -jid value and the command words every
// networked example takes: "listen", or "dial PEER_FULL_JID". Its error is
// the message to print before the usage.
func ParseCommand(self string, args []string) (Command, error) {
	if self == "" {
		return Command{}, errors.New("-jid is required")
	}
	j, err := jid.Parse(self)
	if err != nil || j.Localpart() == "" {
		return Command{}, fmt.Errorf("-jid %q: want user@domain[/resource]", self)
	}
	c := Command{Self: j}
	if len(args) == 0 {
		return c, errors.New("say listen or dial")
	}
	switch args[0] {
	case "listen":
		if len(args) != 1 {
			return c, errors.New("listen takes no argument")
		}
		c.Listen = true
	case "dial":
		if len(args) != 2 {
			return c, errors.New("dial takes one argument, the peer's full JID")
		}
		peer, err := jid.Parse(args[1])
		if err != nil || peer.Localpart() == "" || peer.Resourcepart() == "" {
			return c, fmt.Errorf("dial %q: want a full JID, user@domain/resource", args[1])
		}
		c.Peer = peer
	default:
		return c, fmt.Errorf("unknown command %q", args[0])
	}
	return c, nil
}

// LoginFlags defines the flags every networked example takes to log in:
// -server, -jid (into self, checked later by ParseCommand), -password and
// -ca.
func LoginFlags(fs *flag.FlagSet, l *Login, self *string) {
	fs.StringVar(&l.Server, "server", "", "server `host:port` (default: the JID's domain, port 5222)")
	fs.StringVar(self, "jid", "", "our account, user@domain[/resource] (required)")
	fs.StringVar(&l.Password, "password", "", "password (default: $"+PasswordEnv+")")
	fs.StringVar(&l.CAFile, "ca", "", "PEM `file` of CAs for the server's certificate (default: system roots)")
}

// ParseListenDial checks the words of a program that listens or dials:
// "listen", or "dial PEER_FULL_JID". Its error is the message to print
// before the usage.
func ParseListenDial(words []string) (listen bool, peer jid.JID, err error) {
	if len(words) == 0 {
		return false, peer, errors.New("say listen or dial")
	}
	switch words[0] {
	case "listen":
		if len(words) != 1 {
			return false, peer, errors.New("listen takes no argument")
		}
		return true, peer, nil
	case "dial":
		if len(words) != 2 {
			return false, peer, errors.New("dial takes one argument, the peer's full JID")
		}
		peer, err = ParsePeer(words[1])
		return false, peer, err
	}
	return false, peer, fmt.Errorf("unknown command %q", words[0])
}
