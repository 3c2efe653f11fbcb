package cli

import (
	"sync"

	"mellium.im/xmpp/jid"

	"github.com/xmppxtls/xtls/xtls"
)

// ConfirmPins is the pin file, except that a key pinned on first use or by
// pairing waits in memory until the program confirms it (the user said
// yes, or pairing succeeded), so that a key the user did not confirm never
// reaches the file. Replacing pins (an accepted key change) is written at
// once.
type ConfirmPins struct {
	xtls.PinStore
	mu      sync.Mutex
	pending map[string]xtls.Fingerprint // bare JID -> key
}

// AddPin implements xtls.PinStore: it holds fp until confirm.
func (p *ConfirmPins) AddPin(bare jid.JID, fp xtls.Fingerprint) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		p.pending = make(map[string]xtls.Fingerprint)
	}
	p.pending[bare.Bare().String()] = fp
	return nil
}

// Confirm writes the key held for bare to the pin file.
func (p *ConfirmPins) Confirm(bare jid.JID) error {
	p.mu.Lock()
	fp, ok := p.pending[bare.String()]
	delete(p.pending, bare.String())
	p.mu.Unlock()
	if !ok {
		return nil
	}
	return p.PinStore.AddPin(bare, fp)
}

// Discard forgets the key held for bare.
func (p *ConfirmPins) Discard(bare jid.JID) {
	p.mu.Lock()
	delete(p.pending, bare.String())
	p.mu.Unlock()
}
