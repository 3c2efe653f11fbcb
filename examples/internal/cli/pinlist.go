package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"

	"github.com/xmppxtls/xtls/xtls"
)

// PinList returns every pin of the pin file at path, by bare JID, in the
// order of the JIDs. A missing file has none. xtls.FilePinStore documents
// the format; it answers for one JID at a time only, so the list is read
// here (a FilePinStore.All would belong in xtls).
func PinList(path string) ([]PeerPins, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f struct {
		Version int                           `json:"version"`
		Pins    map[string][]xtls.Fingerprint `json:"pins"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("pin file %s: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("pin file %s: version %d, want 1", path, f.Version)
	}
	list := make([]PeerPins, 0, len(f.Pins))
	for peer, fps := range f.Pins {
		list = append(list, PeerPins{Peer: peer, Keys: fps})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Peer < list[j].Peer })
	return list, nil
}

// PeerPins are the keys pinned for one bare JID.
type PeerPins struct {
	Peer string
	Keys []xtls.Fingerprint
}
