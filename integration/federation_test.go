package integration

import (
	"testing"

	"github.com/xmppxtls/xtls/integration/harness"
)

// alice on Prosody (a.localhost) and bob on ejabberd (b.localhost), the two
// servers linked server-to-server on loopback: a tunnel across both, 16 MiB
// each way, opened from either side.
func TestFederation(t *testing.T) {
	prosody, ejabberd := harness.StartFederatedT(t, harness.ProsodyOptions{}, harness.EjabberdOptions{})
	harness.AddUserT(t, prosody, "alice", password("alice"))
	harness.AddUserT(t, ejabberd, "bob", password("bob"))
	alice := connect(t, prosody, "alice", partyOpt{})
	bob := connect(t, ejabberd, "bob", partyOpt{})
	for _, dir := range []struct {
		name     string
		from, to *party
	}{{"alice-dials-bob", alice, bob}, {"bob-dials-alice", bob, alice}} {
		t.Run(dir.name, func(t *testing.T) {
			c1, c2 := tunnel(t, dir.from, dir.to)
			exchange(t, c1, c2, 16<<20)
			c1.Close()
			c2.Close()
		})
	}
}
