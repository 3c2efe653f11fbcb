package xtls

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"mellium.im/xmpp/jid"
)

// PinStore remembers which public keys (SHA-256 SPKI fingerprints) belong to a
// peer's bare JID.
//
// A JID passed to a PinStore is reduced to its bare JID; the zero JID and the
// zero Fingerprint are rejected with an error.
// Implementations must be safe for concurrent use by multiple goroutines.
type PinStore interface {
	// Pins returns the fingerprints pinned for bare, in the order they were
	// added, or nil, nil when there are none.
	// The caller owns the returned slice.
	Pins(bare jid.JID) ([]Fingerprint, error)
	// AddPin pins fp for bare, in addition to the pins it already has.
	// Adding a fingerprint that is already pinned does nothing.
	AddPin(bare jid.JID, fp Fingerprint) error
	// ReplacePins replaces every pin of bare by fps: the key change of a
	// peer, explicitly accepted by the user.
	// Without fps it removes the pins of bare.
	ReplacePins(bare jid.JID, fps ...Fingerprint) error
	// RemovePins forgets every pin of bare.
	// Removing the pins of a JID that has none does nothing.
	RemovePins(bare jid.JID) error
}

// pinKey returns the key under which the pins of j are stored: its bare JID
// in normalized form.
func pinKey(j jid.JID) (string, error) {
	b := j.Bare()
	if b.Domainpart() == "" {
		return "", errors.New("xtls: cannot pin keys for an empty JID")
	}
	return b.String(), nil
}

var errZeroFingerprint = errors.New("xtls: the zero fingerprint cannot be pinned")

// addPin returns pins with fp appended, and whether fp was new.
func addPin(pins []Fingerprint, fp Fingerprint) ([]Fingerprint, bool) {
	if slices.Contains(pins, fp) {
		return pins, false
	}
	return append(pins, fp), true
}

// uniquePins returns fps without duplicates, in order of first appearance.
func uniquePins(fps []Fingerprint) ([]Fingerprint, error) {
	var out []Fingerprint
	for _, fp := range fps {
		if fp == (Fingerprint{}) {
			return nil, errZeroFingerprint
		}
		out, _ = addPin(out, fp)
	}
	return out, nil
}

// MemPinStore is a PinStore held in memory, for tests and for applications
// with a storage of their own.
// It is safe for concurrent use by multiple goroutines.
type MemPinStore struct {
	mu   sync.Mutex
	pins map[string][]Fingerprint
}

var _ PinStore = (*MemPinStore)(nil)

// NewMemPinStore returns an empty MemPinStore.
func NewMemPinStore() *MemPinStore {
	return &MemPinStore{pins: make(map[string][]Fingerprint)}
}

// Pins implements PinStore.
func (s *MemPinStore) Pins(bare jid.JID) ([]Fingerprint, error) {
	k, err := pinKey(bare)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pins[k]), nil
}

// AddPin implements PinStore.
func (s *MemPinStore) AddPin(bare jid.JID, fp Fingerprint) error {
	k, err := pinKey(bare)
	if err != nil {
		return err
	}
	if fp == (Fingerprint{}) {
		return errZeroFingerprint
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pins[k], _ = addPin(s.pins[k], fp)
	return nil
}

// ReplacePins implements PinStore.
func (s *MemPinStore) ReplacePins(bare jid.JID, fps ...Fingerprint) error {
	k, err := pinKey(bare)
	if err != nil {
		return err
	}
	pins, err := uniquePins(fps)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(pins) == 0 {
		delete(s.pins, k)
	} else {
		s.pins[k] = pins
	}
	return nil
}

// RemovePins implements PinStore.
func (s *MemPinStore) RemovePins(bare jid.JID) error {
	k, err := pinKey(bare)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pins, k)
	return nil
}

// pinFileVersion is the version of the pin file format that FilePinStore
// reads and writes.
const pinFileVersion = 1

// pinFile is the content of a pin file.
type pinFile struct {
	Version int                      `json:"version"`
	Pins    map[string][]Fingerprint `json:"pins"`
}

// PinFileError is returned when a FilePinStore cannot use its file: the file
// cannot be read or written, or its content is not a valid pin file (it is not
// JSON, has an unknown version or field, or holds an invalid JID or
// fingerprint).
// A FilePinStore never treats a file it cannot read as empty.
type PinFileError struct {
	// Path is the absolute path of the pin file.
	Path string
	// Err is the reason.
	Err error
}

// Error implements error.
func (e *PinFileError) Error() string {
	return "xtls: pin file " + e.Path + ": " + e.Err.Error()
}

// Unwrap returns e.Err.
func (e *PinFileError) Unwrap() error { return e.Err }

// FilePinStore is a PinStore kept in a JSON file, one per user or
// application. The file looks like this:
//
//	{
//	  "version": 1,
//	  "pins": {
//	    "alice@example.net": [
//	      "3f6c0a...64 lowercase hexadecimal digits"
//	    ]
//	  }
//	}
//
// "pins" maps normalized bare JIDs (RFC 7622 enforcement, as jid.Parse does
// it) to the SHA-256 SPKI fingerprints pinned for them, in the order they
// were pinned, written as 64 lowercase hexadecimal digits (see
// Fingerprint.MarshalText; every form ParseFingerprint accepts is read). A
// file edited by hand may hold JIDs that are not normalized; they are
// normalized when read (two spellings of one JID are merged), and a key that
// is not a bare JID makes the file invalid. A pin means: the peer whose
// bare JID this is may present this key (or a certificate its user CA with
// this key signed), within the certificate's validity dates.
//
// Versioning: "version" is the format's version, 1 so far. A FilePinStore
// refuses a file of any other version, or with a field it does not know,
// with a *PinFileError, and never rewrites it: a program that knows only
// version 1 cannot destroy pins written in a later format, and says why it
// cannot read them. A change to the format that an older reader would
// misread gets a new version number. A FilePinStore writes version 1.
//
// A missing file is an empty store; the file is created on the first change.
// A file that cannot be read or parsed is refused with a *PinFileError, when
// the store is opened and on every later call, and is never overwritten.
//
// Every change rereads the file and rewrites it atomically: the new content is
// written to a temporary file in the same directory with mode 0600, synced,
// renamed over the old file, and the directory is synced.
// If a change fails, the file keeps its old content.
// Changes are serialized by an advisory lock (flock(2) on Unix; elsewhere a
// lock within the process only) on a lock file next
// to it, with the suffix ".lock", which is created once and left in place.
// So a FilePinStore is safe for concurrent use by multiple goroutines, and
// several FilePinStores, in one process or in several, may share a file
// without losing each other's pins.
// Reads take no lock: thanks to the atomic renames they always see a complete
// file.
type FilePinStore struct {
	path string
	mu   sync.Mutex // serializes the changes made through this FilePinStore

	// beforeRename, if not nil, is called with the temporary file's name just
	// before it replaces the pin file; an error aborts the change. For tests.
	beforeRename func(tmp string) error
}

var _ PinStore = (*FilePinStore)(nil)

// NewFilePinStore opens the pin file at path.
// The file need not exist, but its directory must.
// If the file exists and is not a valid pin file, NewFilePinStore returns a
// *PinFileError.
func NewFilePinStore(path string) (*FilePinStore, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &PinFileError{Path: path, Err: err}
	}
	s := &FilePinStore{path: abs}
	if _, err := s.load(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(filepath.Dir(abs)); err != nil {
		return nil, &PinFileError{Path: abs, Err: err}
	} else if !fi.IsDir() {
		return nil, &PinFileError{Path: abs, Err: fmt.Errorf("%s is not a directory", filepath.Dir(abs))}
	}
	return s, nil
}

// Pins implements PinStore. It rereads the file.
func (s *FilePinStore) Pins(bare jid.JID) ([]Fingerprint, error) {
	k, err := pinKey(bare)
	if err != nil {
		return nil, err
	}
	pins, err := s.load()
	if err != nil {
		return nil, err
	}
	return pins[k], nil
}

// AddPin implements PinStore.
func (s *FilePinStore) AddPin(bare jid.JID, fp Fingerprint) error {
	k, err := pinKey(bare)
	if err != nil {
		return err
	}
	if fp == (Fingerprint{}) {
		return errZeroFingerprint
	}
	return s.modify(func(pins map[string][]Fingerprint) bool {
		var added bool
		pins[k], added = addPin(pins[k], fp)
		return added
	})
}

// ReplacePins implements PinStore.
func (s *FilePinStore) ReplacePins(bare jid.JID, fps ...Fingerprint) error {
	k, err := pinKey(bare)
	if err != nil {
		return err
	}
	newPins, err := uniquePins(fps)
	if err != nil {
		return err
	}
	return s.modify(func(pins map[string][]Fingerprint) bool {
		if slices.Equal(pins[k], newPins) {
			return false
		}
		if len(newPins) == 0 {
			delete(pins, k)
		} else {
			pins[k] = newPins
		}
		return true
	})
}

// RemovePins implements PinStore.
func (s *FilePinStore) RemovePins(bare jid.JID) error {
	k, err := pinKey(bare)
	if err != nil {
		return err
	}
	return s.modify(func(pins map[string][]Fingerprint) bool {
		if _, ok := pins[k]; !ok {
			return false
		}
		delete(pins, k)
		return true
	})
}

// modify applies change to the current content of the file, under the lock,
// and writes the result if change reports a change.
func (s *FilePinStore) modify(change func(pins map[string][]Fingerprint) (changed bool)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()

	pins, err := s.load()
	if err != nil {
		return err
	}
	if !change(pins) {
		return nil
	}
	data, err := json.MarshalIndent(pinFile{Version: pinFileVersion, Pins: pins}, "", "  ")
	if err != nil {
		return &PinFileError{Path: s.path, Err: err}
	}
	if err := writeFileAtomic(s.path, append(data, '\n'), s.beforeRename); err != nil {
		return &PinFileError{Path: s.path, Err: err}
	}
	return nil
}

// lock takes the exclusive advisory lock on the lock file and returns the
// function that releases it.
func (s *FilePinStore) lock() (unlock func(), err error) {
	path := s.path + ".lock"
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, &PinFileError{Path: s.path, Err: err}
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, &PinFileError{Path: s.path, Err: fmt.Errorf("locking %s: %w", path, err)}
	}
	return func() {
		unlockFile(f)
		f.Close()
	}, nil
}

// load reads and parses the pin file. A missing file is an empty store.
func (s *FilePinStore) load() (map[string][]Fingerprint, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return make(map[string][]Fingerprint), nil
	}
	if err != nil {
		return nil, &PinFileError{Path: s.path, Err: err}
	}
	pins, err := parsePinFile(data)
	if err != nil {
		return nil, &PinFileError{Path: s.path, Err: err}
	}
	return pins, nil
}

// parsePinFile parses the content of a pin file and returns its pins keyed by
// normalized bare JID.
func parsePinFile(data []byte) (map[string][]Fingerprint, error) {
	// Check the version first, leniently, so that a file of another version
	// is reported as such rather than as having unknown fields.
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("not a pin file: %w", err)
	}
	if v.Version != pinFileVersion {
		return nil, fmt.Errorf("unsupported version %d, want %d", v.Version, pinFileVersion)
	}

	var f pinFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a pin file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a pin file: data after the JSON object")
	}

	pins := make(map[string][]Fingerprint, len(f.Pins))
	for k, fps := range f.Pins {
		j, err := jid.Parse(k)
		if err != nil {
			return nil, fmt.Errorf("invalid JID %q: %w", k, err)
		}
		if j.Resourcepart() != "" {
			return nil, fmt.Errorf("%q is not a bare JID", k)
		}
		for _, fp := range fps {
			if fp == (Fingerprint{}) {
				return nil, fmt.Errorf("zero fingerprint for %q", k)
			}
			// A JID written twice, not normalized, is merged.
			pins[j.String()], _ = addPin(pins[j.String()], fp)
		}
	}
	return pins, nil
}

// writeFileAtomic replaces the file at path with data: it writes data to a
// temporary file in the same directory with mode 0600, syncs it, renames it
// over path and syncs the directory. If it fails before the rename, the file
// at path is untouched and the temporary file is removed.
// beforeRename, if not nil, is called just before the rename; an error from
// it aborts.
func writeFileAtomic(path string, data []byte, beforeRename func(tmp string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	closed, renamed := false, false
	defer func() {
		if err != nil && !closed {
			f.Close()
		}
		if err != nil && !renamed {
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	closed = true
	if err = f.Close(); err != nil {
		return err
	}
	if beforeRename != nil {
		if err = beforeRename(tmp); err != nil {
			return err
		}
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	renamed = true
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. File systems that cannot sync a
// directory are tolerated.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !syncUnsupported(err) {
		return err
	}
	return nil
}
