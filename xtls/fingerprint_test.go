package xtls_test

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/xtls"
)

// abcFingerprint is SHA-256("abc") (FIPS 180-2, appendix B.1), the fingerprint
// of a certificate whose SubjectPublicKeyInfo would be "abc".
var abcFingerprint = xtls.SPKIFingerprint(&x509.Certificate{RawSubjectPublicKeyInfo: []byte("abc")})

const (
	abcGrouped = "BA78 16BF 8F01 CFEA 4141 40DE 5DAE 2223 B003 61A3 9617 7A9C B410 FF61 F200 15AD"
	abcPlain   = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	abcColons  = "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
)

func TestFingerprintString(t *testing.T) {
	s := abcFingerprint.String()
	require.Equal(t, abcGrouped, s)
	groups := strings.Split(s, " ")
	require.Len(t, groups, 16)
	for _, g := range groups {
		require.Len(t, g, 4)
		require.Equal(t, strings.ToUpper(g), g)
	}
}

func TestFingerprintMarshalText(t *testing.T) {
	text, err := abcFingerprint.MarshalText()
	require.NoError(t, err)
	require.Equal(t, abcPlain, string(text))

	var f xtls.Fingerprint
	require.NoError(t, f.UnmarshalText([]byte(abcGrouped)))
	require.Equal(t, abcFingerprint, f)
	require.Error(t, f.UnmarshalText([]byte("nope")))
	require.Equal(t, abcFingerprint, f, "a failed UnmarshalText must not change the fingerprint")
}

var parseFingerprintTests = [...]struct {
	in      string
	wantErr bool
}{
	0:  {in: abcGrouped},
	1:  {in: strings.ToLower(abcGrouped)},
	2:  {in: abcPlain},
	3:  {in: strings.ToUpper(abcPlain)},
	4:  {in: abcColons},
	5:  {in: strings.ToLower(abcColons)},
	6:  {in: "  " + abcGrouped + "\n"},
	7:  {in: "BA7816BF 8F01CFEA 414140DE 5DAE2223 B00361A3 96177A9C B410FF61 F20015AD"},
	8:  {in: "BA78\t16BF 8F01  CFEA 4141 40DE 5DAE 2223\nB003 61A3 9617 7A9C B410 FF61 F200 15AD"},
	9:  {in: "", wantErr: true},
	10: {in: abcPlain[:62], wantErr: true},
	11: {in: abcPlain + "00", wantErr: true},
	12: {in: "zz" + abcPlain[2:], wantErr: true},
	13: {in: abcColons[:len(abcColons)-3], wantErr: true},
	14: {in: abcColons + ":00", wantErr: true},
	15: {in: "BA7:8" + abcColons[5:], wantErr: true},
	16: {in: "BA:78 16:BF" + abcColons[11:], wantErr: true},
	17: {in: abcGrouped[:len(abcGrouped)-1], wantErr: true},
	18: {in: "sha256:" + abcPlain, wantErr: true},
	19: {in: strings.Repeat("0", 64)},
}

func TestParseFingerprint(t *testing.T) {
	for i, tc := range parseFingerprintTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			f, err := xtls.ParseFingerprint(tc.in)
			if tc.wantErr {
				require.Error(t, err)
				require.Contains(t, err.Error(), "xtls: invalid fingerprint")
				require.Zero(t, f)
				return
			}
			require.NoError(t, err)
			if i == 19 {
				require.Zero(t, f)
				return
			}
			require.Equal(t, abcFingerprint, f)
		})
	}
}

func TestFingerprintRoundTrip(t *testing.T) {
	for i := range 100 {
		var f xtls.Fingerprint
		rand.Read(f[:])

		p, err := xtls.ParseFingerprint(f.String())
		require.NoError(t, err, "round %d", i)
		require.Equal(t, f, p)

		text, err := f.MarshalText()
		require.NoError(t, err)
		var u xtls.Fingerprint
		require.NoError(t, u.UnmarshalText(text))
		require.Equal(t, f, u)

		js, err := json.Marshal(map[string]xtls.Fingerprint{"fp": f})
		require.NoError(t, err)
		var m map[string]xtls.Fingerprint
		require.NoError(t, json.Unmarshal(js, &m))
		require.Equal(t, f, m["fp"])
	}
}
