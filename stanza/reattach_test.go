package stanza_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/stanza"
)

func TestReattachRoundTrip(t *testing.T) {
	r := stanza.Reattach{SID: "s1", Old: "alice@example.com/phone", Counter: 3, Proof: bytes.Repeat([]byte{0xab}, stanza.ProofSize)}
	var b strings.Builder
	require.NoError(t, xml.NewEncoder(&b).Encode(r))
	el, err := stanza.Decode(xml.NewDecoder(strings.NewReader(b.String())))
	require.NoError(t, err)
	require.Equal(t, r, el)
}

func TestReattachStrict(t *testing.T) {
	proof := strings.Repeat("A", 43) + "="
	for _, tc := range []struct {
		name, xml string
		want      error
	}{
		{"no sid", `<reattach xmlns='urn:xmpp:xtls:0' old='a@b/c' counter='1' proof='` + proof + `'/>`, stanza.ErrMissingAttr},
		{"no old", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' counter='1' proof='` + proof + `'/>`, stanza.ErrMissingAttr},
		{"bare old", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' old='a@b' counter='1' proof='` + proof + `'/>`, stanza.ErrSyntax},
		{"unnormalized old", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' old='A@b/c' counter='1' proof='` + proof + `'/>`, stanza.ErrSyntax},
		{"counter 0", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' old='a@b/c' counter='0' proof='` + proof + `'/>`, stanza.ErrOutOfRange},
		{"counter sign", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' old='a@b/c' counter='+1' proof='` + proof + `'/>`, stanza.ErrSyntax},
		{"short proof", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' old='a@b/c' counter='1' proof='qqqq'/>`, stanza.ErrSyntax},
		{"unpadded proof", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' old='a@b/c' counter='1' proof='` + strings.Repeat("q", 43) + `'/>`, stanza.ErrSyntax},
		{"content", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' old='a@b/c' counter='1' proof='` + proof + `'>x</reattach>`, stanza.ErrContent},
		{"extra attr", `<reattach xmlns='urn:xmpp:xtls:0' sid='s' old='a@b/c' counter='1' proof='` + proof + `' x='1'/>`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stanza.Decode(xml.NewDecoder(strings.NewReader(tc.xml)))
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.True(t, errors.Is(err, tc.want), "got %v, want %v", err, tc.want)
		})
	}
}
