package stanza_test

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/stanza"
)

// FuzzDecode checks that decoding never panics and that whatever decodes
// encodes to something that decodes to the same value.
func FuzzDecode(f *testing.F) {
	for _, e := range roundTrips {
		f.Add(encode(f, e))
	}
	for _, r := range rejects {
		f.Add(r.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := stanza.Decode(xml.NewDecoder(strings.NewReader(s)))
		if err != nil {
			require.Nil(t, e)
			return
		}
		again, err := decode(encode(t, e))
		require.NoError(t, err)
		require.Equal(t, e, again)
	})
}
