package xtls

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/jid"
)

// TestFilePinStoreFailedWrite checks that the pins survive a write that fails
// at the last moment, and that the temporary file is cleaned up.
func TestFilePinStoreFailedWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pins.json")
	alice := jid.MustParse("alice@example.net")
	fp1 := Fingerprint(sha256.Sum256([]byte("key 1")))
	fp2 := Fingerprint(sha256.Sum256([]byte("key 2")))

	s, err := NewFilePinStore(path)
	require.NoError(t, err)
	require.NoError(t, s.AddPin(alice, fp1))
	before, err := os.ReadFile(path)
	require.NoError(t, err)

	injected := errors.New("injected failure")
	var tmpSeen string
	s.beforeRename = func(tmp string) error {
		tmpSeen = tmp
		require.Equal(t, dir, filepath.Dir(tmp), "the temporary file is in the same directory")
		fi, err := os.Stat(tmp)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		return injected
	}
	for _, change := range []func() error{
		func() error { return s.AddPin(alice, fp2) },
		func() error { return s.ReplacePins(alice, fp2) },
		func() error { return s.RemovePins(alice) },
	} {
		tmpSeen = ""
		err = change()
		var pfErr *PinFileError
		require.ErrorAs(t, err, &pfErr)
		require.ErrorIs(t, err, injected)
		require.NotEmpty(t, tmpSeen)
		require.NoFileExists(t, tmpSeen)

		after, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, before, after)
		pins, err := s.Pins(alice)
		require.NoError(t, err)
		require.Equal(t, []Fingerprint{fp1}, pins)
	}

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.Equal(t, []string{"pins.json", "pins.json.lock"}, names)

	// Nothing to change: no write is even attempted.
	tmpSeen = ""
	require.NoError(t, s.AddPin(alice, fp1))
	require.Empty(t, tmpSeen)
}
