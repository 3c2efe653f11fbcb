// Command xtls-pins manages the keys that the xtls tools have pinned for
// an account: the peers' public keys (SHA-256 SPKI fingerprints), by bare
// JID, kept in the state directory that every xtls tool shares
// (DIR/BARE-JID/pins.json; see xtls.FilePinStore).
//
// Usage:
//
//	xtls-pins [flags] list                        every peer and its keys
//	xtls-pins [flags] show PEER                   the keys of one peer
//	xtls-pins [flags] remove PEER                 forget them: the next contact is a first contact
//	xtls-pins [flags] accept PEER FINGERPRINT     pin exactly this key for PEER, replacing the others
//
// When a peer's key changes, every tool refuses it and prints the two
// commands that fix it, with this account's flags filled in, e.g.
//
//	xtls-pins -jid alice@example.net accept bob@example.org '3F6C 0A…'
//	xtls-pins -jid alice@example.net remove bob@example.org
//
// accept takes the fingerprint the other person reads to you (any
// grouping, upper or lower case, or colon-separated bytes): it never
// trusts "whatever key comes next".
//
// Flags: -jid (or the profile's jid) names the account; -dir and -profile
// as in every xtls tool; -q prints nothing but errors. Flags may also come
// after the command.
//
// Exit status:
//
//	0  done
//	1  the pin file cannot be read or written, or PEER has no pin to show
//	   or remove
//	2  bad usage
package main

import (
	"os"

	"github.com/xmppxtls/xtls/examples/internal/cli"
)

func main() {
	os.Exit(cli.RunPins(os.Args[1:], os.Stdout, os.Stderr))
}
