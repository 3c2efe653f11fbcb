package cli

import (
	"fmt"
	"io"
	"path/filepath"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// PinsUsage is the usage of xtls-pins.
const PinsUsage = `usage: xtls-pins [flags] list
       xtls-pins [flags] show PEER
       xtls-pins [flags] remove PEER
       xtls-pins [flags] accept PEER FINGERPRINT`

// RunPins is the whole of xtls-pins: it lists, shows, removes and accepts
// the keys pinned for our account (see its package documentation), and
// returns the exit status. It lives here so that every program's tests
// can run the command that the program's messages name.
func RunPins(args []string, stdout, stderr io.Writer) int {
	var o Options
	p := NewParser("xtls-pins", PinsUsage, &o, stderr)
	words, code := p.Parse(args, &o)
	if code >= 0 {
		return code
	}
	usage := p.Usagef
	self, err := o.Self()
	if err != nil {
		return usage("%v", err)
	}
	if len(words) == 0 {
		return usage("say list, show, remove or accept")
	}
	want := map[string]int{"list": 0, "show": 1, "remove": 1, "accept": 2}
	n, ok := want[words[0]]
	if !ok {
		return usage("unknown command %q", words[0])
	}
	if len(words)-1 != n {
		return usage("%s takes %d argument(s)", words[0], n)
	}
	var peer jid.JID
	if n > 0 {
		if peer, err = jid.Parse(words[1]); err != nil || peer.Localpart() == "" && peer.Domainpart() == "" {
			return usage("%q is not a JID", words[1])
		}
		peer = peer.Bare()
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "xtls-pins: %v\n", err)
		return ExitOther
	}
	path := filepath.Join(o.Dir, self.Bare().String(), "pins.json")
	if words[0] == "list" {
		list, err := PinList(path)
		if err != nil {
			return fail(err)
		}
		if !o.Quiet {
			fmt.Fprintf(stdout, "pins of %s (%s):\n", self.Bare(), path)
		}
		for _, p := range list {
			for _, fp := range p.Keys {
				fmt.Fprintf(stdout, "%s  %s\n", p.Peer, fp)
			}
		}
		return ExitOK
	}
	store, err := xtls.NewFilePinStore(path)
	if err != nil {
		return fail(err)
	}
	fps, err := store.Pins(peer)
	if err != nil {
		return fail(err)
	}
	switch words[0] {
	case "show":
		if len(fps) == 0 {
			fmt.Fprintf(stderr, "xtls-pins: no key pinned for %s\n", peer)
			return ExitOther
		}
		for _, fp := range fps {
			fmt.Fprintf(stdout, "%s  %s\n", peer, fp)
		}
	case "remove":
		if len(fps) == 0 {
			fmt.Fprintf(stderr, "xtls-pins: no key pinned for %s: nothing removed\n", peer)
			return ExitOther
		}
		if err := store.RemovePins(peer); err != nil {
			return fail(err)
		}
		if !o.Quiet {
			fmt.Fprintf(stdout, "removed the key(s) of %s; the next contact is a first contact\n", peer)
		}
	case "accept":
		fp, err := xtls.ParseFingerprint(words[2])
		if err != nil {
			return usage("%v", err)
		}
		if err := store.ReplacePins(peer, fp); err != nil {
			return fail(err)
		}
		if !o.Quiet {
			fmt.Fprintf(stdout, "pinned %s for %s (and only it)\n", fp, peer)
		}
	}
	return ExitOK
}
