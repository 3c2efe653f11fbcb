package cli

import (
	"errors"
	"fmt"

	"mellium.im/xmpp/jid"
)

// ParseListenDial checks the words of a program that listens or dials:
// "listen", or "dial PEER". Its error is the message to print
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
