package stanza_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/stanza"
)

func encode(t testing.TB, e stanza.Element) string {
	t.Helper()
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	_, err := e.WriteXML(enc)
	require.NoError(t, err)
	require.NoError(t, enc.Flush())
	return b.String()
}

func decode(s string) (stanza.Element, error) {
	return stanza.Decode(xml.NewDecoder(strings.NewReader(s)))
}

var roundTrips = [...]stanza.Element{
	0:  stanza.Start{SID: "a", BlockSize: 4096, Window: 4096, Method: "x509"},
	1:  stanza.Start{SID: strings.Repeat("Z", 64), BlockSize: 65535, Window: 16 << 20, Method: "x509"},
	2:  stanza.Proceed{SID: "s-_09", BlockSize: 8192, Window: 1 << 20},
	3:  stanza.Data{SID: "s", Seq: 0, Payload: []byte{0}},
	4:  stanza.Data{SID: "s", Seq: 65535, Payload: bytes.Repeat([]byte{0xff, 1, 2}, 65535/3)},
	5:  stanza.Credit{SID: "s", Limit: 0},
	6:  stanza.Credit{SID: "s", Limit: 1<<63 - 1},
	7:  stanza.Close{SID: "s"},
	8:  stanza.Close{SID: "s", Error: "policy-violation"},
	9:  stanza.Closed{SID: "s"},
	10: stanza.Data{SID: "s", Seq: 7, Payload: []byte("hi")},
}

func TestRoundTrip(t *testing.T) {
	for i, e := range roundTrips {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			got, err := decode(encode(t, e))
			require.NoError(t, err)
			require.Equal(t, e, got)
		})
	}
}

func TestEncodingIsExact(t *testing.T) {
	require.Equal(t,
		`<start xmlns="urn:xmpp:xtls:0" sid="abc" block-size="4096" window="65536" method="x509"></start>`,
		encode(t, stanza.Start{SID: "abc", BlockSize: 4096, Window: 65536}))
	require.Equal(t,
		`<data xmlns="urn:xmpp:xtls:0" sid="abc" seq="3">aGVsbG8=</data>`,
		encode(t, stanza.Data{SID: "abc", Seq: 3, Payload: []byte("hello")}))
	require.Equal(t,
		`<close xmlns="urn:xmpp:xtls:0" sid="abc" error="not-acceptable"></close>`,
		encode(t, stanza.Close{SID: "abc", Error: "not-acceptable"}))
}

var rejects = [...]struct {
	in  string
	err error
}{
	0:  {`<start xmlns='urn:xmpp:xtls:0' block-size='4096' window='4096'/>`, stanza.ErrMissingAttr},
	1:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' window='4096'/>`, stanza.ErrMissingAttr},
	2:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='4096'/>`, stanza.ErrMissingAttr},
	3:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='4095' window='8192'/>`, stanza.ErrOutOfRange},
	4:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='65536' window='80000'/>`, stanza.ErrOutOfRange},
	5:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='8191'/>`, stanza.ErrOutOfRange},
	6:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='16777217'/>`, stanza.ErrOutOfRange},
	7:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='+8192' window='9000'/>`, stanza.ErrSyntax},
	8:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size=' 8192' window='9000'/>`, stanza.ErrSyntax},
	9:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9e3'/>`, stanza.ErrSyntax},
	10: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='' window='9000'/>`, stanza.ErrSyntax},
	11: {`<start xmlns='urn:xmpp:xtls:0' sid='a b' block-size='8192' window='9000'/>`, stanza.ErrSyntax},
	12: {`<start xmlns='urn:xmpp:xtls:0' sid='` + strings.Repeat("a", 65) + `' block-size='8192' window='9000'/>`, stanza.ErrSyntax},
	13: {`<start xmlns='urn:xmpp:xtls:0' sid='' block-size='8192' window='9000'/>`, stanza.ErrSyntax},
	14: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9000' method='otr'/>`, stanza.ErrUnknownMethod},
	15: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9000' method=''/>`, stanza.ErrUnknownMethod},
	16: {`<start xmlns='urn:xmpp:xtls:0' sid='a' sid='b' block-size='8192' window='9000'/>`, stanza.ErrDuplicateAttr},
	17: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9000'><x/></start>`, stanza.ErrContent},
	18: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9000'>text</start>`, stanza.ErrContent},
	19: {`<start xmlns='urn:xmpp:xtls:1' sid='a' block-size='8192' window='9000'/>`, stanza.ErrNotXTLS},
	20: {`<begin xmlns='urn:xmpp:xtls:0' sid='a'/>`, stanza.ErrNotXTLS},
	21: {`<proceed xmlns='urn:xmpp:xtls:0' sid='a' block-size='99999999999999999999999' window='9000'/>`, stanza.ErrOutOfRange},
	22: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='65536'>AA==</data>`, stanza.ErrOutOfRange},
	23: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='-1'>AA==</data>`, stanza.ErrSyntax},
	24: {`<data xmlns='urn:xmpp:xtls:0' sid='a'>AA==</data>`, stanza.ErrMissingAttr},
	25: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'></data>`, stanza.ErrEmpty},
	26: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>  </data>`, stanza.ErrEmpty},
	27: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AA</data>`, stanza.ErrBadBase64},
	28: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AA=</data>`, stanza.ErrBadBase64},
	29: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AA==AA==</data>`, stanza.ErrBadBase64},
	30: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AB==</data>`, stanza.ErrBadBase64}, // non-zero padding bits
	31: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>A_==</data>`, stanza.ErrBadBase64}, // URL alphabet
	32: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AAAA<b/></data>`, stanza.ErrContent},
	33: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AA==A</data>`, stanza.ErrBadBase64},
	34: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='9223372036854775808'/>`, stanza.ErrOutOfRange},
	35: {`<credit xmlns='urn:xmpp:xtls:0' limit='1'/>`, stanza.ErrMissingAttr},
	36: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='oops'/>`, stanza.ErrSyntax},
	37: {`<closed xmlns='urn:xmpp:xtls:0'/>`, stanza.ErrMissingAttr},
	38: {`<close xmlns='urn:xmpp:xtls:0' sid='a!'/>`, stanza.ErrSyntax},
	// Issue 19, point 1: a malformed credit or close is rejected here, and
	// the receiver answers bad-request (docs/protocol.md, checks C4, X4).
	39: {`<credit xmlns='urn:xmpp:xtls:0' sid='a'/>`, stanza.ErrMissingAttr},
	40: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='-1'/>`, stanza.ErrSyntax},
	41: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='+1'/>`, stanza.ErrSyntax},
	42: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit=''/>`, stanza.ErrSyntax},
	43: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='99999999999999999999999'/>`, stanza.ErrOutOfRange},
	44: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='1' limit='2'/>`, stanza.ErrDuplicateAttr},
	45: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='1'>1</credit>`, stanza.ErrContent},
	46: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error=''/>`, stanza.ErrSyntax},
	47: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='Bad-Request'/>`, stanza.ErrSyntax},
	48: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='bad-request '/>`, stanza.ErrSyntax},
	49: {`<close xmlns='urn:xmpp:xtls:0' sid='a'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></close>`, stanza.ErrContent},
	50: {`<closed xmlns='urn:xmpp:xtls:0' sid='a' sid='a'/>`, stanza.ErrDuplicateAttr},
	51: {`<proceed xmlns='urn:xmpp:xtls:0' sid='a' block-size='4096'/>`, stanza.ErrMissingAttr},
	// Abort reasons: a token, or nothing.
	52: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='gone' reason=''/>`, stanza.ErrSyntax},
	53: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='gone' reason='Shutdown'/>`, stanza.ErrSyntax},
	54: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='gone' reason='shut down'/>`, stanza.ErrSyntax},
	55: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='gone' reason='aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'/>`, stanza.ErrSyntax},
	56: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='gone' reason='shutdown' reason='shutdown'/>`, stanza.ErrDuplicateAttr},
}

func TestRejects(t *testing.T) {
	for i, tc := range rejects {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			e, err := decode(tc.in)
			require.Nil(t, e)
			require.ErrorIs(t, err, tc.err)
			var de *stanza.DecodeError
			require.True(t, errors.As(err, &de), "%T is not a *DecodeError", err)
			require.Contains(t, err.Error(), "<"+de.Element+">")
		})
	}
}

func TestAccepts(t *testing.T) {
	for i, tc := range [...]struct {
		in   string
		want stanza.Element
	}{
		0: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='04096' window='4096' x='y' xmlns:p='urn:p' p:sid='ignored'/>`,
			stanza.Start{SID: "a", BlockSize: 4096, Window: 4096, Method: "x509"}},
		1: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='1'>
			aGVs	bG8g
			d29y bGQ=
		</data>`, stanza.Data{SID: "a", Seq: 1, Payload: []byte("hello world")}},
		2: {`<close xmlns='urn:xmpp:xtls:0' sid='a'>  </close>`, stanza.Close{SID: "a"}},
		3: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='2'>AA&#x3D;=</data>`, stanza.Data{SID: "a", Seq: 2, Payload: []byte{0}}},
		4: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='gone' reason='shutdown'/>`, stanza.Close{SID: "a", Error: "gone", Reason: "shutdown"}},
		5: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='gone' reason='some-future-reason-2'/>`, stanza.Close{SID: "a", Error: "gone", Reason: "some-future-reason-2"}},
		6: {`<close xmlns='urn:xmpp:xtls:0' sid='a' reason='shutdown'/>`, stanza.Close{SID: "a"}}, // no abort: ignored
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			got, err := decode(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// Every strict prefix of an encoded element must fail to decode. For the
// largest elements, prefixes are sampled (every 211th, and the last 300).
func TestTruncatedPrefixesFail(t *testing.T) {
	for i, e := range roundTrips {
		s := encode(t, e)
		for n := 0; n < len(s); n++ {
			if len(s) > 2000 && n%211 != 0 && n < len(s)-300 {
				continue
			}
			if _, err := decode(s[:n]); err == nil {
				t.Fatalf("element %d: prefix of %d bytes decoded: %q", i, n, s[:n])
			}
		}
	}
}

func TestDataOversize(t *testing.T) {
	for _, n := range []int{4097, 4098, 4099, 5000} {
		d := stanza.Data{SID: "a", Payload: make([]byte, n)}
		start := d.StartElement()
		_, err := stanza.DecodeData(&start, content(d), 4096, nil)
		require.ErrorIs(t, err, stanza.ErrOversize, "n=%d", n)
	}
	d := stanza.Data{SID: "a", Payload: make([]byte, 4096)}
	start := d.StartElement()
	got, err := stanza.DecodeData(&start, content(d), 4096, nil)
	require.NoError(t, err)
	require.Len(t, got.Payload, 4096)
}

// content returns a reader of e's content and end element, as a mux handler
// gets it once the start element has been read.
func content(e stanza.Element) xml.TokenReader {
	r := e.TokenReader()
	_, _ = r.Token()
	return r
}

// splitReader yields the Base64 text of a data element cut into pieces at
// the given points, as an XML decoder may deliver it.
type splitReader struct {
	toks []xml.Token
}

func (s *splitReader) Token() (xml.Token, error) {
	if len(s.toks) == 0 {
		return nil, errors.New("read past end")
	}
	t := s.toks[0]
	s.toks = s.toks[1:]
	return t, nil
}

func TestDataSplitAnywhere(t *testing.T) {
	payload := []byte("the quick brown fox jumps over the lazy dog!")
	text := " " + encodeB64(payload)[:10] + "\n" + encodeB64(payload)[10:] + "\t"
	start := stanza.Data{SID: "a", Seq: 9}.StartElement()
	for i := 0; i <= len(text); i++ {
		for j := i; j <= len(text); j++ {
			r := &splitReader{toks: []xml.Token{
				xml.CharData(text[:i]), xml.CharData(text[i:j]), xml.CharData(text[j:]), start.End(),
			}}
			got, err := stanza.DecodeData(&start, r, 4096, nil)
			require.NoError(t, err, "split %d %d", i, j)
			require.Equal(t, payload, got.Payload)
		}
	}
}

func encodeB64(p []byte) string {
	var b bytes.Buffer
	enc := xml.NewEncoder(&b)
	_, _ = stanza.Data{SID: "a", Payload: p}.WriteXML(enc)
	_ = enc.Flush()
	s := b.String()
	return s[strings.Index(s, ">")+1 : strings.LastIndex(s, "<")]
}

// The payload buffer is reused: decoding into a large enough buffer does not
// allocate it again, and encoding into a reused buffer allocates nothing but
// the reader and its attributes.
func TestDataBuffersReused(t *testing.T) {
	p := bytes.Repeat([]byte("x"), 60000)
	d := stanza.Data{SID: "abc", Seq: 1, Payload: p}
	ebuf := make([]byte, 0, 80000)
	toks := make([]xml.Token, 0, 3)
	allocs := testing.AllocsPerRun(50, func() {
		toks = toks[:0]
		r := d.TokenReaderBuf(ebuf)
		for {
			tok, err := r.Token()
			if err != nil {
				break
			}
			toks = append(toks, tok)
		}
	})
	require.LessOrEqual(t, allocs, 6.0)
	text := toks[1].(xml.CharData)

	dbuf := make([]byte, 0, 65537)
	start := toks[0].(xml.StartElement)
	r := &splitReader{}
	toks2 := []xml.Token{text, start.End()}
	allocs = testing.AllocsPerRun(50, func() {
		r.toks = toks2
		got, err := stanza.DecodeData(&start, r, 65535, dbuf)
		if err != nil || len(got.Payload) != len(p) || &got.Payload[0] != &dbuf[:1][0] {
			panic("decode into buffer failed")
		}
	})
	require.Zero(t, allocs)
}

func TestValidSID(t *testing.T) {
	require.True(t, stanza.ValidSID("aZ09_-"))
	require.False(t, stanza.ValidSID(""))
	require.False(t, stanza.ValidSID("é"))
	require.False(t, stanza.ValidSID("a.b"))
	require.True(t, stanza.ValidCondition("item-not-found"))
	require.False(t, stanza.ValidCondition("item-not-found "))
}

// The error of a close is exactly one of the 22 stanza error conditions of
// RFC 6120, section 8.3.3, spelt as there.
func TestCloseConditions(t *testing.T) {
	for _, c := range strings.Fields(`bad-request conflict feature-not-implemented forbidden gone
		internal-server-error item-not-found jid-malformed not-acceptable not-allowed not-authorized
		policy-violation recipient-unavailable redirect registration-required remote-server-not-found
		remote-server-timeout resource-constraint service-unavailable subscription-required
		undefined-condition unexpected-request`) {
		got, err := decode(`<close xmlns='urn:xmpp:xtls:0' sid='a' error='` + c + `'/>`)
		require.NoError(t, err, c)
		require.Equal(t, stanza.Close{SID: "a", Error: c}, got)
	}
	for _, c := range []string{"text", "Gone", "urn:ietf:params:xml:ns:xmpp-stanzas", "not-well-formed"} {
		require.False(t, stanza.ValidCondition(c), c)
	}
}
