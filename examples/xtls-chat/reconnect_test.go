package main

import (
	"testing"

	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"

	"github.com/xmppxtls/xtls/examples/internal/cli"
)

// A chatter whose session is cut logs in again by itself and says so
// ("connection lost, reconnecting…", then "resumed"); the chat goes on
// over the same tunnel: lines typed after the reconnect arrive, both ways,
// and /quit still ends it for both. Either end may be the one cut.
func TestReconnectChat(t *testing.T) {
	for _, cut := range []string{"listener", "dialer"} {
		t.Run(cut, func(t *testing.T) {
			w := newWorld(t)
			w.firstContact()
			w.connect = cli.NewResources(cli.NetworkConnect(w.network))
			alice := w.listen()
			bob := w.dial()
			w.expect(alice, "chat with")
			w.expect(bob, "chat with")
			w.say(bob, alice, bobBare, "before the cut")

			victim, addr := alice, aliceAddr
			if cut == "dialer" {
				victim, addr = bob, bobAddr
			}
			if err := w.network.Disconnect(jid.MustParse(addr), stream.SystemShutdown); err != nil {
				t.Fatal(err)
			}
			w.expect(victim, "*** "+cli.StatusLost)
			w.expect(victim, "*** "+cli.StatusResumed)
			w.say(bob, alice, bobBare, "after the reconnect")
			w.say(alice, bob, aliceBare, "heard you")
			bob.Type("/quit")
			w.expect(alice, "bob@example.org left the chat")
			w.exit(alice, exitOK)
			w.exit(bob, exitOK)
		})
	}
}
