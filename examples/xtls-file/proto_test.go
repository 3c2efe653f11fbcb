package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// Offers a peer may send that must be refused.
func TestOfferCheck(t *testing.T) {
	ok := []Entry{{Path: "d", Dir: true}, {Path: "d/a", Size: 3}}
	for i, tc := range [...]struct {
		entries []Entry
		ok      bool
	}{
		0:  {ok, true},
		1:  {[]Entry{{Path: "../x", Size: 1}}, false},
		2:  {[]Entry{{Path: "/etc/passwd", Size: 1}}, false},
		3:  {[]Entry{{Path: "a/../../x"}}, false},
		4:  {[]Entry{{Path: "d/a", Size: 1}}, false}, // before its folder
		5:  {[]Entry{{Path: "a", Size: 1}, {Path: "a", Size: 1}}, false},
		6:  {[]Entry{{Path: "a" + partSuffix, Size: 1}}, false},
		7:  {[]Entry{{Path: "a", Size: -1}}, false},
		8:  {[]Entry{{Path: "d", Dir: true, Size: 4}}, false},
		9:  {[]Entry{{Path: ""}}, false},
		10: {[]Entry{{Path: "a\x00b"}}, false},
		11: {[]Entry{{Path: "./a"}}, false},
		12: {nil, false},
		13: {[]Entry{{Path: "a", Size: 1 << 62}, {Path: "b", Size: 1 << 62}}, false},
	} {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			o := Offer{Version: version, Entries: tc.entries}
			err := o.check()
			var pe *ProtocolError
			if tc.ok != (err == nil) || (err != nil && !errors.As(err, &pe)) {
				t.Errorf("check(%+v) = %v", tc.entries, err)
			}
		})
	}
}

// Frames beyond their type's limit, of unknown types, or cut short fail
// without reading the body.
func TestFrameLimits(t *testing.T) {
	frame := func(typ byte, n uint32, body string) []byte {
		var h [5]byte
		h[0] = typ
		binary.BigEndian.PutUint32(h[1:], n)
		return append(h[:], body...)
	}
	for i, tc := range [...]struct {
		in   []byte
		want string
	}{
		0: {frame(frameData, blockSize+1, ""), "at most"},
		1: {frame(frameOffer, maxJSONFrame+1, ""), "at most"},
		2: {frame('?', 0, ""), "unknown frame type"},
		3: {frame(frameData, 10, "abc"), io.ErrUnexpectedEOF.Error()},
		4: {frame(frameAbort, 5, "stop\x1b"), "the peer aborted: stop?"},
	} {
		_, _, err := newFrameReader(bytes.NewReader(tc.in), nil).next()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d: %v, want %q", i, err, tc.want)
		}
	}
	var b bytes.Buffer
	fw := &frameWriter{w: &b}
	// Keep-alives are skipped.
	fw.write(frameAlive, nil)
	fw.write(frameAlive, nil)
	if err := fw.write(frameEnd, endFrame(7, make([]byte, 32))); err != nil {
		t.Fatal(err)
	}
	typ, body, err := newFrameReader(&b, nil).next()
	if err != nil || typ != frameEnd || binary.BigEndian.Uint32(body) != 7 || len(body) != 36 {
		t.Errorf("round trip: %c %x %v", typ, body, err)
	}
}
