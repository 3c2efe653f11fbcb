package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// xtls-pins lists, shows, accepts exactly one key and removes, on the
// pin file of the account; flags may follow the command.
func TestRunPins(t *testing.T) {
	dir := t.TempDir()
	run := func(want int, args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if code := RunPins(append([]string{"-dir", dir}, args...), &out, &out); code != want {
			t.Fatalf("xtls-pins %q: exit %d, want %d:\n%s", args, code, want, out.String())
		}
		return out.String()
	}
	if err := os.MkdirAll(filepath.Join(dir, "alice@example.net"), 0o700); err != nil {
		t.Fatal(err)
	}
	store, err := xtls.NewFilePinStore(filepath.Join(dir, "alice@example.net", "pins.json"))
	if err != nil {
		t.Fatal(err)
	}
	var old, other, fresh xtls.Fingerprint
	old[0], other[0], fresh[0] = 1, 2, 3
	store.AddPin(jid.MustParse("bob@example.org"), old)
	store.AddPin(jid.MustParse("carol@example.com"), other)

	out := run(ExitOK, "-jid", "alice@example.net/x", "list")
	if !strings.Contains(out, "bob@example.org  "+old.String()) || !strings.Contains(out, "carol@example.com  "+other.String()) ||
		strings.Index(out, "bob@") > strings.Index(out, "carol@") {
		t.Errorf("list:\n%s", out)
	}
	if out := run(ExitOK, "show", "bob@example.org/laptop", "-jid", "alice@example.net"); strings.TrimSpace(out) != "bob@example.org  "+old.String() {
		t.Errorf("show: %q", out)
	}
	run(ExitOK, "-jid", "alice@example.net", "accept", "bob@example.org", strings.ToLower(strings.ReplaceAll(fresh.String(), " ", "")))
	if got, _ := store.Pins(jid.MustParse("bob@example.org")); len(got) != 1 || got[0] != fresh {
		t.Errorf("after accept: %v, want only %s", got, fresh)
	}
	run(ExitOK, "-jid", "alice@example.net", "remove", "carol@example.com")
	if got, _ := store.Pins(jid.MustParse("carol@example.com")); len(got) != 0 {
		t.Errorf("after remove: %v", got)
	}
	run(ExitOther, "-jid", "alice@example.net", "remove", "carol@example.com")
	run(ExitOther, "-jid", "alice@example.net", "show", "carol@example.com")
	run(ExitUsage, "-jid", "alice@example.net", "accept", "bob@example.org", "not a fingerprint")
	run(ExitUsage, "-jid", "alice@example.net", "accept", "bob@example.org")
	run(ExitUsage, "-jid", "alice@example.net", "forget", "bob@example.org")
	run(ExitUsage, "list")
}
