package bsframe_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/stanza"

	"github.com/xmppxtls/xtls/internal/bsframe"
)

// unhex decodes hex written with spaces between fields, as the vectors are
// in docs/bytestream-frames.md.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

// The valid vectors of docs/bytestream-frames.md: each encodes to its hex
// and decodes from it.
var validVectors = [...]struct {
	hex   string
	frame bsframe.Frame
}{
	0: {"01 00000001 0000 0005 68656c6c6f", bsframe.Frame{Type: bsframe.Data, ID: 1, Seq: 0, Payload: []byte("hello")}},
	1: {"01 fffffffe ffff 0001 ff", bsframe.Frame{Type: bsframe.Data, ID: 0xfffffffe, Seq: 65535, Payload: []byte{0xff}}},
	2: {"02 00000002 0000000000010000", bsframe.Frame{Type: bsframe.Credit, ID: 2, Limit: 65536}},
	3: {"02 01020304 7fffffffffffffff", bsframe.Frame{Type: bsframe.Credit, ID: 0x01020304, Limit: 1<<63 - 1}},
	4: {"03 00000001", bsframe.Frame{Type: bsframe.Result, ID: 1}},
	5: {"04 00000003 05 12", bsframe.Frame{Type: bsframe.Error, ID: 3, ErrType: stanza.Wait, Cond: stanza.ResourceConstraint}},
	6: {"04 80000000 02 07", bsframe.Frame{Type: bsframe.Error, ID: 0x80000000, ErrType: stanza.Cancel, Cond: stanza.ItemNotFound}},
	7: {"04 00000004 04 01", bsframe.Frame{Type: bsframe.Error, ID: 4, ErrType: stanza.Modify, Cond: stanza.BadRequest}},
	8: {"06", bsframe.Frame{Type: bsframe.Nop}},
	9: {"05", bsframe.Frame{Type: bsframe.Bye}},
}

func TestValidVectors(t *testing.T) {
	for i, v := range validVectors {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			want := unhex(t, v.hex)

			got, err := bsframe.AppendFrame(nil, v.frame)
			require.NoError(t, err)
			require.Equal(t, want, got, "encoding")

			f, err := bsframe.NewReader(bytes.NewReader(want)).Next()
			require.NoError(t, err)
			require.Equal(t, normal(v.frame), normal(f), "decoding")
		})
	}
}

// normal makes a nil and an empty payload compare equal.
func normal(f bsframe.Frame) bsframe.Frame {
	if len(f.Payload) == 0 {
		f.Payload = nil
	}
	return f
}

// The invalid vectors of docs/bytestream-frames.md: each is refused by the
// Reader as malformed, naming the field. after-bye starts with a valid Bye.
var invalidVectors = [...]struct {
	hex   string
	typ   bsframe.Type
	field bsframe.Field
	short bool
}{
	0:  {"00", 0x00, bsframe.FieldType, false},
	1:  {"07", 0x07, bsframe.FieldType, false},
	2:  {"ff", 0xff, bsframe.FieldType, false},
	3:  {"01 00000001 0000 0000", bsframe.Data, bsframe.FieldLen, false},
	4:  {"02 00000002 8000000000000000", bsframe.Credit, bsframe.FieldLimit, false},
	5:  {"02 00000002 ffffffffffffffff", bsframe.Credit, bsframe.FieldLimit, false},
	6:  {"04 00000003 00 12", bsframe.Error, bsframe.FieldErrorType, false},
	7:  {"04 00000003 06 12", bsframe.Error, bsframe.FieldErrorType, false},
	8:  {"04 00000003 05 00", bsframe.Error, bsframe.FieldCondition, false},
	9:  {"04 00000003 05 17", bsframe.Error, bsframe.FieldCondition, false},
	10: {"01 000000", bsframe.Data, bsframe.FieldID, true},
	11: {"01 00000001 00", bsframe.Data, bsframe.FieldSeq, true},
	12: {"01 00000001 0000 00", bsframe.Data, bsframe.FieldLen, true},
	13: {"01 00000001 0000 0005 6868", bsframe.Data, bsframe.FieldPayload, true},
	14: {"02 00000002 00000000", bsframe.Credit, bsframe.FieldLimit, true},
	15: {"03 0000", bsframe.Result, bsframe.FieldID, true},
	16: {"04 00000003", bsframe.Error, bsframe.FieldErrorType, true},
	17: {"04 00000003 05", bsframe.Error, bsframe.FieldCondition, true},
	18: {"05 01 00000001 0000 0001 00", bsframe.Data, bsframe.FieldAfterBye, false},
	19: {"05 05", bsframe.Bye, bsframe.FieldAfterBye, false},
}

func TestInvalidVectors(t *testing.T) {
	for i, v := range invalidVectors {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			r := bsframe.NewReader(bytes.NewReader(unhex(t, v.hex)))
			f, err := r.Next()
			if v.field == bsframe.FieldAfterBye {
				require.NoError(t, err)
				require.Equal(t, bsframe.Bye, f.Type)
				f, err = r.Next()
			}
			require.ErrorIs(t, err, bsframe.ErrMalformed)
			require.Equal(t, bsframe.Frame{}, f)
			var me *bsframe.MalformedError
			require.ErrorAs(t, err, &me)
			require.Equal(t, v.typ, me.Type)
			require.Equal(t, v.field, me.Field)
			require.Equal(t, v.short, me.Short)
			require.Equal(t, v.short, errors.Is(err, io.ErrUnexpectedEOF))
		})
	}
}

// The offending value is reported, and the message names frame and field.
func TestMalformedErrorText(t *testing.T) {
	for i, c := range [...]struct {
		hex, want string
		value     uint64
	}{
		0: {"07", "bsframe: malformed frame: unknown type 0x7", 7},
		1: {"01 00000001 0000 0000", "bsframe: malformed DATA frame: len 0 out of range", 0},
		2: {"02 00000002 8000000000000000", "bsframe: malformed CREDIT frame: limit 9223372036854775808 out of range", 1 << 63},
		3: {"04 00000003 09 12", "bsframe: malformed ERROR frame: unknown error-type code 9", 9},
		4: {"04 00000003 05 ff", "bsframe: malformed ERROR frame: unknown condition code 255", 255},
		5: {"01 00000001 0000 0005 6868", "bsframe: malformed DATA frame: stream ended in payload", 0},
		6: {"05 01", "bsframe: malformed DATA frame: sent after BYE", 0},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			r := bsframe.NewReader(bytes.NewReader(unhex(t, c.hex)))
			_, err := r.Next()
			if err == nil {
				_, err = r.Next()
			}
			require.EqualError(t, err, c.want)
			var me *bsframe.MalformedError
			require.ErrorAs(t, err, &me)
			require.Equal(t, c.value, me.Value)
		})
	}
}

// Frames that break the wire format are not encoded.
func TestAppendFrameRefuses(t *testing.T) {
	for i, c := range [...]struct {
		frame bsframe.Frame
		field bsframe.Field
	}{
		0: {bsframe.Frame{Type: 0}, bsframe.FieldType},
		1: {bsframe.Frame{Type: 7}, bsframe.FieldType},
		2: {bsframe.Frame{Type: bsframe.Data, ID: 1}, bsframe.FieldLen},
		3: {bsframe.Frame{Type: bsframe.Data, ID: 1, Payload: make([]byte, bsframe.MaxPayload+1)}, bsframe.FieldLen},
		4: {bsframe.Frame{Type: bsframe.Credit, Limit: bsframe.MaxLimit + 1}, bsframe.FieldLimit},
		5: {bsframe.Frame{Type: bsframe.Error, Cond: stanza.BadRequest}, bsframe.FieldErrorType},
		6: {bsframe.Frame{Type: bsframe.Error, ErrType: "retry", Cond: stanza.BadRequest}, bsframe.FieldErrorType},
		7: {bsframe.Frame{Type: bsframe.Error, ErrType: stanza.Cancel}, bsframe.FieldCondition},
		8: {bsframe.Frame{Type: bsframe.Error, ErrType: stanza.Cancel, Cond: "no-such-condition"}, bsframe.FieldCondition},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			dst := []byte{0xaa}
			got, err := bsframe.AppendFrame(dst, c.frame)
			require.ErrorIs(t, err, bsframe.ErrMalformed)
			var me *bsframe.MalformedError
			require.ErrorAs(t, err, &me)
			require.Equal(t, c.field, me.Field)
			require.Equal(t, []byte{0xaa}, got)

			var buf bytes.Buffer
			w := bsframe.NewWriter(&buf)
			require.ErrorIs(t, w.WriteFrame(c.frame), bsframe.ErrMalformed)
			require.Zero(t, w.Buffered())
		})
	}
}

// The largest and the smallest Data frames, and fields a type does not use,
// which the encoder ignores.
func TestAppendFrameEdges(t *testing.T) {
	big := bytes.Repeat([]byte{0x5a}, bsframe.MaxPayload)
	enc, err := bsframe.AppendFrame(nil, bsframe.Frame{Type: bsframe.Data, ID: 9, Seq: 3, Payload: big})
	require.NoError(t, err)
	require.Len(t, enc, bsframe.MaxFrame)
	require.Equal(t, unhex(t, "01 00000009 0003 ffff"), enc[:9])
	f, err := bsframe.NewReader(bytes.NewReader(enc)).Next()
	require.NoError(t, err)
	require.Equal(t, big, f.Payload)

	enc, err = bsframe.AppendFrame([]byte{0xaa}, bsframe.Frame{Type: bsframe.Result, ID: 1, Seq: 7, Payload: []byte("x"), Limit: 5, ErrType: stanza.Wait})
	require.NoError(t, err)
	require.Equal(t, unhex(t, "aa 03 00000001"), enc)
	enc, err = bsframe.AppendFrame(nil, bsframe.Frame{Type: bsframe.Bye, ID: 1})
	require.NoError(t, err)
	require.Equal(t, []byte{0x05}, enc)
}

// The code tables: RFC 6120's order from 1, both ways, nothing else.
func TestCodes(t *testing.T) {
	types := []stanza.ErrorType{stanza.Auth, stanza.Cancel, stanza.Continue, stanza.Modify, stanza.Wait}
	for i, typ := range types {
		c, ok := bsframe.ErrorTypeCode(typ)
		require.True(t, ok, typ)
		require.Equal(t, uint8(i+1), c, typ)
		back, ok := bsframe.ErrorTypeOf(c)
		require.True(t, ok)
		require.Equal(t, typ, back)
	}
	conds := strings.Fields(`bad-request conflict feature-not-implemented forbidden gone
		internal-server-error item-not-found jid-malformed not-acceptable not-allowed
		not-authorized policy-violation recipient-unavailable redirect
		registration-required remote-server-not-found remote-server-timeout
		resource-constraint service-unavailable subscription-required
		undefined-condition unexpected-request`)
	require.Len(t, conds, 22)
	for i, s := range conds {
		c, ok := bsframe.ConditionCode(stanza.Condition(s))
		require.True(t, ok, s)
		require.Equal(t, uint8(i+1), c, s)
		back, ok := bsframe.ConditionOf(c)
		require.True(t, ok)
		require.Equal(t, stanza.Condition(s), back)
	}
	for _, c := range []uint8{0, 6, 255} {
		_, ok := bsframe.ErrorTypeOf(c)
		require.False(t, ok, c)
	}
	for _, c := range []uint8{0, 23, 255} {
		_, ok := bsframe.ConditionOf(c)
		require.False(t, ok, c)
	}
	for _, typ := range []stanza.ErrorType{"", "Cancel", "retry"} {
		_, ok := bsframe.ErrorTypeCode(typ)
		require.False(t, ok, typ)
	}
	for _, c := range []stanza.Condition{"", "Bad-Request", "see-other-host"} {
		_, ok := bsframe.ConditionCode(c)
		require.False(t, ok, c)
	}
}

func TestStanzaError(t *testing.T) {
	f := bsframe.Frame{Type: bsframe.Error, ID: 3, ErrType: stanza.Wait, Cond: stanza.ResourceConstraint}
	require.ErrorIs(t, f.StanzaError(), stanza.Error{Type: stanza.Wait})
	require.ErrorIs(t, f.StanzaError(), stanza.Error{Condition: stanza.ResourceConstraint})
	require.NotErrorIs(t, f.StanzaError(), stanza.Error{Type: stanza.Cancel})
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[bsframe.Type]string{
		bsframe.Data: "DATA", bsframe.Credit: "CREDIT", bsframe.Result: "RESULT",
		bsframe.Error: "ERROR", bsframe.Bye: "BYE", 0: "0x0", 0xfe: "0xfe",
	} {
		require.Equal(t, want, typ.String())
	}
}
