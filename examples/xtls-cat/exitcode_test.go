package main

import (
	"fmt"
	"testing"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/xtls"
)

// A possible downgrade (a pinned peer answered as if it had no XTLS) is a
// trust failure, not "the peer does not support XTLS".
func TestDialExitCodeDowngrade(t *testing.T) {
	err := fmt.Errorf("dial: %w", &xtls.DowngradeError{
		Peer: jid.MustParse("bob@example.org/b"),
		Err:  stanza.Error{Type: stanza.Cancel, Condition: stanza.ServiceUnavailable},
	})
	if got := dialExitCode(err); got != exitTrust {
		t.Fatalf("exit %d, want %d", got, exitTrust)
	}
}
