package xtls_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

var (
	_ xtls.PinStore = (*xtls.MemPinStore)(nil)
	_ xtls.PinStore = (*xtls.FilePinStore)(nil)
)

// testFP returns a distinct fingerprint for each n.
func testFP(n int) xtls.Fingerprint {
	return sha256.Sum256([]byte("key " + strconv.Itoa(n)))
}

// testPinStore checks the behaviour every PinStore shares. s must be empty.
func testPinStore(t *testing.T, s xtls.PinStore) {
	alice := jid.MustParse("alice@example.net")
	bob := jid.MustParse("bob@example.net")

	pins, err := s.Pins(alice)
	require.NoError(t, err)
	require.Nil(t, pins)

	require.NoError(t, s.AddPin(alice, testFP(1)))
	require.NoError(t, s.AddPin(alice, testFP(1)), "AddPin is idempotent")
	// A full JID is reduced to its bare JID, and JIDs are normalized.
	require.NoError(t, s.AddPin(jid.MustParse("Alice@EXAMPLE.net/phone"), testFP(2)))
	require.NoError(t, s.AddPin(bob, testFP(3)))

	pins, err = s.Pins(alice)
	require.NoError(t, err)
	require.Equal(t, []xtls.Fingerprint{testFP(1), testFP(2)}, pins)
	pins, err = s.Pins(jid.MustParse("alice@example.net/laptop"))
	require.NoError(t, err)
	require.Equal(t, []xtls.Fingerprint{testFP(1), testFP(2)}, pins)
	pins[0] = testFP(99) // the caller owns the slice
	pins, err = s.Pins(alice)
	require.NoError(t, err)
	require.Equal(t, []xtls.Fingerprint{testFP(1), testFP(2)}, pins)

	require.NoError(t, s.ReplacePins(alice, testFP(4), testFP(5), testFP(4)))
	pins, err = s.Pins(alice)
	require.NoError(t, err)
	require.Equal(t, []xtls.Fingerprint{testFP(4), testFP(5)}, pins)

	require.NoError(t, s.ReplacePins(alice))
	pins, err = s.Pins(alice)
	require.NoError(t, err)
	require.Nil(t, pins)

	require.NoError(t, s.RemovePins(bob))
	require.NoError(t, s.RemovePins(bob), "removing nothing is no error")
	pins, err = s.Pins(bob)
	require.NoError(t, err)
	require.Nil(t, pins)

	require.Error(t, s.AddPin(jid.JID{}, testFP(1)))
	require.Error(t, s.AddPin(alice, xtls.Fingerprint{}))
	require.Error(t, s.ReplacePins(alice, testFP(1), xtls.Fingerprint{}))
	_, err = s.Pins(jid.JID{})
	require.Error(t, err)
	require.Error(t, s.RemovePins(jid.JID{}))
	pins, err = s.Pins(alice)
	require.NoError(t, err)
	require.Nil(t, pins, "failed calls change nothing")
}

func TestMemPinStore(t *testing.T) {
	testPinStore(t, xtls.NewMemPinStore())
}

func TestFilePinStore(t *testing.T) {
	s, err := xtls.NewFilePinStore(filepath.Join(t.TempDir(), "pins.json"))
	require.NoError(t, err)
	testPinStore(t, s)
}

// requireCleanDir checks that dir holds the pin file, its lock file and
// nothing else: no temporary file is left behind.
func requireCleanDir(t *testing.T, dir string) {
	t.Helper()
	require.Equal(t, []string{"pins.json", "pins.json.lock"}, filesIn(t, dir))
}

func TestFilePinStorePersistence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	alice := jid.MustParse("alice@example.net")

	s, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	require.NoFileExists(t, path, "the file is created on the first change")
	require.NoError(t, s.AddPin(alice, testFP(1)))
	require.NoError(t, s.AddPin(alice, testFP(2)))

	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	requireCleanDir(t, dir)

	// The documented format.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var f struct {
		Version int                 `json:"version"`
		Pins    map[string][]string `json:"pins"`
	}
	require.NoError(t, json.Unmarshal(data, &f))
	fp1, _ := testFP(1).MarshalText()
	fp2, _ := testFP(2).MarshalText()
	require.Equal(t, 1, f.Version)
	require.Equal(t, map[string][]string{"alice@example.net": {string(fp1), string(fp2)}}, f.Pins)

	s2, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	pins, err := s2.Pins(alice)
	require.NoError(t, err)
	require.Equal(t, []xtls.Fingerprint{testFP(1), testFP(2)}, pins)

	// A change through one store is seen by the other.
	require.NoError(t, s2.RemovePins(alice))
	pins, err = s.Pins(alice)
	require.NoError(t, err)
	require.Nil(t, pins)
}

func TestFilePinStoreHandEdited(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	// Not normalized, and fingerprints in the forms users copy.
	content := fmt.Sprintf(`{"version":1,"pins":{"Alice@EXAMPLE.net":[%q],"alice@example.net":[%q],"bob@example.net":[]}}`,
		testFP(1).String(), testFP(2).String())
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))

	s, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	pins, err := s.Pins(jid.MustParse("alice@example.net"))
	require.NoError(t, err)
	require.ElementsMatch(t, []xtls.Fingerprint{testFP(1), testFP(2)}, pins)
	pins, err = s.Pins(jid.MustParse("bob@example.net"))
	require.NoError(t, err)
	require.Nil(t, pins)

	// The next change writes the normalized form.
	require.NoError(t, s.AddPin(jid.MustParse("carol@example.net"), testFP(3)))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var f struct {
		Pins map[string][]string `json:"pins"`
	}
	require.NoError(t, json.Unmarshal(data, &f))
	require.Len(t, f.Pins, 2)
	require.Len(t, f.Pins["alice@example.net"], 2)
	require.Len(t, f.Pins["carol@example.net"], 1)
}

func TestFilePinStoreConcurrentAddPin(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	s, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	alice := jid.MustParse("alice@example.net")

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.AddPin(alice, testFP(i))
		})
	}
	// Reads may run while the file is being replaced.
	wg.Go(func() {
		for range 20 {
			if _, err := s.Pins(alice); err != nil {
				errs <- err
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	s2, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	pins, err := s2.Pins(alice)
	require.NoError(t, err)
	require.Len(t, pins, n)
	for i := range n {
		require.Contains(t, pins, testFP(i))
	}
	requireCleanDir(t, dir)
}

// TestFilePinStoreTwoStores has two FilePinStores on one file, each with its
// own lock, add different pins at the same time: none may be lost.
func TestFilePinStoreTwoStores(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	a, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	b, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	alice := jid.MustParse("alice@example.net")
	bob := jid.MustParse("bob@example.net")

	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	wg.Go(func() {
		for i := range n {
			errs <- a.AddPin(alice, testFP(i))
		}
	})
	wg.Go(func() {
		for i := range n {
			jid := alice
			if i%2 == 1 {
				jid = bob
			}
			errs <- b.AddPin(jid, testFP(100+i))
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	var want []xtls.Fingerprint
	for i := range n {
		want = append(want, testFP(i))
		if i%2 == 0 {
			want = append(want, testFP(100+i))
		}
	}
	pins, err := a.Pins(alice)
	require.NoError(t, err)
	require.ElementsMatch(t, want, pins)
	pins, err = b.Pins(bob)
	require.NoError(t, err)
	require.Len(t, pins, n/2)
	requireCleanDir(t, dir)
}

const helperEnv = "XTLS_PIN_STORE_HELPER"

// TestFilePinStoreHelperProcess is not a test: TestFilePinStoreProcesses runs
// the test binary with it to add pins from another process.
func TestFilePinStoreHelperProcess(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("helper process for TestFilePinStoreProcesses")
	}
	var args struct {
		Path  string
		JID   string
		First int
		N     int
	}
	require.NoError(t, json.Unmarshal([]byte(spec), &args))
	s, err := xtls.NewFilePinStore(args.Path)
	require.NoError(t, err)
	j := jid.MustParse(args.JID)
	for i := range args.N {
		require.NoError(t, s.AddPin(j, testFP(args.First+i)))
	}
}

// TestFilePinStoreProcesses has two processes add pins to one file at the
// same time: none may be lost.
func TestFilePinStoreProcesses(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("in a helper process")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	const n = 15
	var cmds []*exec.Cmd
	for i, j := range [...]string{"alice@example.net", "alice@example.net", "bob@example.net"} {
		spec, err := json.Marshal(map[string]any{"Path": path, "JID": j, "First": 100 * i, "N": n})
		require.NoError(t, err)
		cmd := exec.Command(os.Args[0], "-test.run=^TestFilePinStoreHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
		require.NoError(t, cmd.Start())
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		require.NoError(t, cmd.Wait())
	}

	s, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	pins, err := s.Pins(jid.MustParse("alice@example.net"))
	require.NoError(t, err)
	require.Len(t, pins, 2*n)
	pins, err = s.Pins(jid.MustParse("bob@example.net"))
	require.NoError(t, err)
	require.Len(t, pins, n)
	for i := range n {
		require.Contains(t, pins, testFP(200+i))
	}
	requireCleanDir(t, dir)
}

var corruptPinFiles = [...]string{
	0:  "",
	1:  "garbage",
	2:  `{"version":1,"pins":{"alice@example.net":["`,
	3:  `{"pins":{}}`,
	4:  `{"version":2,"pins":{}}`,
	5:  `{"version":"1","pins":{}}`,
	6:  `{"version":1,"pins":{"alice@example.net":["zz"]}}`,
	7:  `{"version":1,"pins":{"alice@example.net":[1,2]}}`,
	8:  `{"version":1,"pins":{"@example.net":[]}}`,
	9:  `{"version":1,"pins":{"alice@example.net/phone":[]}}`,
	10: `{"version":1,"pins":{},"extra":true}`,
	11: `{"version":1,"pins":{}} {}`,
	12: `{"version":1,"pins":{"alice@example.net":["` + zeroHex + `"]}}`,
	13: `{"version":1,"pins":{"alice@example.net":[null]}}`,
	14: `{"version":1,"pins":[]}`,
	15: `null`,
	16: `[]`,
}

const zeroHex = "0000000000000000000000000000000000000000000000000000000000000000"

func TestFilePinStoreCorruptFile(t *testing.T) {
	for i, content := range corruptPinFiles {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "pins.json")
			require.NoError(t, os.WriteFile(path, []byte(content), 0o600))

			s, err := xtls.NewFilePinStore(path)
			var pfErr *xtls.PinFileError
			require.ErrorAs(t, err, &pfErr)
			require.Nil(t, s)
			require.Equal(t, path, pfErr.Path)
			require.ErrorContains(t, err, "xtls: pin file "+path+": ")

			data, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, content, string(data), "a corrupt file is never overwritten")
		})
	}
}

func TestFilePinStoreCorruptedLater(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	alice := jid.MustParse("alice@example.net")
	s, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	require.NoError(t, s.AddPin(alice, testFP(1)))

	const garbage = `{"version":1,"pins":{"alice@exa`
	require.NoError(t, os.WriteFile(path, []byte(garbage), 0o600))

	var pfErr *xtls.PinFileError
	_, err = s.Pins(alice)
	require.ErrorAs(t, err, &pfErr)
	require.ErrorAs(t, s.AddPin(alice, testFP(2)), &pfErr)
	require.ErrorAs(t, s.ReplacePins(alice, testFP(2)), &pfErr)
	require.ErrorAs(t, s.RemovePins(alice), &pfErr)
	require.Equal(t, path, pfErr.Path)

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, garbage, string(data), "a corrupt file is never overwritten")
	requireCleanDir(t, dir)
}

func TestFilePinStoreVersionError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	require.NoError(t, os.WriteFile(path, []byte(`{"version":2,"pins":{},"future":{}}`), 0o600))
	_, err := xtls.NewFilePinStore(path)
	require.ErrorContains(t, err, "unsupported version 2")
}

// A file that a newer program rewrote in a later format is refused, never
// overwritten: its pins survive the older program.
func TestFilePinStoreNewerVersionKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pins.json")
	s, err := xtls.NewFilePinStore(path)
	require.NoError(t, err)
	alice := jid.MustParse("alice@example.net")
	require.NoError(t, s.AddPin(alice, xtls.Fingerprint{1}))
	newer := `{"version":2,"pins":{"alice@example.net":[{"spki":"01"}]}}`
	require.NoError(t, os.WriteFile(path, []byte(newer), 0o600))
	var pfErr *xtls.PinFileError
	require.ErrorAs(t, s.AddPin(alice, xtls.Fingerprint{2}), &pfErr)
	require.ErrorContains(t, pfErr, "unsupported version 2")
	_, err = s.Pins(alice)
	require.ErrorAs(t, err, &pfErr)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, newer, string(data))
}

func TestFilePinStoreMissingDir(t *testing.T) {
	_, err := xtls.NewFilePinStore(filepath.Join(t.TempDir(), "missing", "pins.json"))
	var pfErr *xtls.PinFileError
	require.ErrorAs(t, err, &pfErr)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestFilePinStoreRelativePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s, err := xtls.NewFilePinStore("pins.json")
	require.NoError(t, err)
	t.Chdir(t.TempDir())
	require.NoError(t, s.AddPin(jid.MustParse("alice@example.net"), testFP(1)))
	require.FileExists(t, filepath.Join(dir, "pins.json"))
}

func ExampleNewFilePinStore() {
	dir, err := os.MkdirTemp("", "xtls-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "pins.json")

	bob := jid.MustParse("bob@example.net")
	bobCert, err := xtls.GenerateCertificate(bob)
	if err != nil {
		log.Fatal(err)
	}
	presented := xtls.SPKIFingerprint(bobCert.Leaf)

	store, err := xtls.NewFilePinStore(path)
	if err != nil {
		log.Fatal(err)
	}
	pins, err := store.Pins(bob)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pins at first contact:", len(pins))
	// Trust on first use, or after the user compared presented.String() with
	// what bob reads out: pin the key.
	if err := store.AddPin(bob, presented); err != nil {
		log.Fatal(err)
	}

	// Later, perhaps in another process, bob connects from another device.
	store, err = xtls.NewFilePinStore(path)
	if err != nil {
		log.Fatal(err)
	}
	pins, err = store.Pins(jid.MustParse("bob@example.net/laptop"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pinned key presented again:", slices.Contains(pins, presented))

	// A new key is not trusted until the user accepts it.
	newCert, err := xtls.GenerateCertificate(bob)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("new key pinned:", slices.Contains(pins, xtls.SPKIFingerprint(newCert.Leaf)))
	if err := store.ReplacePins(bob, xtls.SPKIFingerprint(newCert.Leaf)); err != nil {
		log.Fatal(err)
	}
	pins, err = store.Pins(bob)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pins after the accepted key change:", len(pins))

	// Output:
	// pins at first contact: 0
	// pinned key presented again: true
	// new key pinned: false
	// pins after the accepted key change: 1
}
