// Package docs_test checks docs/protocol.md against the code and the schema:
// every example stanza's XTLS payload is valid against docs/xtls.xsd (with
// xmllint, from Debian's libxml2-utils) and accepted by stanza.Decode, every
// example marked invalid is refused by stanza.Decode, and the schema printed
// in the document is docs/xtls.xsd.
package docs_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/xmppxtls/xtls/stanza"
)

const (
	docPath    = "protocol.md"
	schemaPath = "xtls.xsd"
)

// block is a fenced code block of the document.
type block struct {
	info string // the fence's info string: "xml", "xml invalid", "xsd", ...
	line int    // line of the opening fence
	text string
}

// blocks returns the fenced code blocks of a Markdown document.
func blocks(t *testing.T, doc string) []block {
	t.Helper()
	var (
		out []block
		cur *block
		buf strings.Builder
	)
	for i, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(l, "```") {
			if cur != nil {
				buf.WriteString(l)
				buf.WriteByte('\n')
			}
			continue
		}
		if cur == nil {
			cur = &block{info: strings.TrimSpace(strings.TrimPrefix(l, "```")), line: i + 1}
			buf.Reset()
			continue
		}
		cur.text = buf.String()
		out = append(out, *cur)
		cur = nil
	}
	require.Nil(t, cur, "unterminated code block at line %d", lineOf(cur))
	return out
}

func lineOf(b *block) int {
	if b == nil {
		return 0
	}
	return b.line
}

// payload is one XTLS element of an example, as written.
type payload struct {
	where  string // "protocol.md:LINE, <name>"
	name   string
	iqType string // type of the enclosing IQ, "" if none
	text   string // the element's own text, namespace declaration included
}

// payloads returns the XTLS elements in the XML of an example block, each
// with the type of the IQ around it. The block may hold several stanzas;
// each XTLS element must declare its namespace itself.
func payloads(t *testing.T, b block) []payload {
	t.Helper()
	const open = "<examples>"
	src := open + b.text + "</examples>"
	d := xml.NewDecoder(strings.NewReader(src))
	var (
		out   []payload
		types []string // IQ type per open element
	)
	for {
		before := d.InputOffset()
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err, "protocol.md:%d: not well-formed XML", b.line)
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Space != stanza.NS {
				typ := ""
				if el.Name.Local == "iq" {
					typ = attr(el, "type")
				} else if len(types) > 0 {
					typ = types[len(types)-1]
				}
				types = append(types, typ)
				continue
			}
			require.NoError(t, d.Skip())
			text := src[before:d.InputOffset()]
			line := b.line + 1 + strings.Count(src[len(open):before], "\n")
			p := payload{where: fmt.Sprintf("protocol.md:%d <%s>", line, el.Name.Local), name: el.Name.Local, text: text}
			if len(types) > 0 {
				p.iqType = types[len(types)-1]
			}
			out = append(out, p)
		case xml.EndElement:
			types = types[:len(types)-1]
		}
	}
	return out
}

func attr(el xml.StartElement, name string) string {
	for _, a := range el.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// iqTypes is the IQ type each element travels in.
var iqTypes = map[string]string{
	"start": "set", "data": "set", "credit": "set", "close": "set", "reattach": "set",
	"proceed": "result", "closed": "result",
}

func decode(text string) (stanza.Element, error) {
	return stanza.Decode(xml.NewDecoder(strings.NewReader(text)))
}

// xmllint validates each document against the schema and reports, per
// document, whether it is valid. It fails the test if xmllint is missing:
// scripts/install-deps.sh (make check) installs it.
func xmllint(t *testing.T, schema string, docs []string) []bool {
	t.Helper()
	bin, err := exec.LookPath("xmllint")
	if err != nil {
		t.Fatalf("xmllint not found (%v): it validates the examples against the schema; install Debian's libxml2-utils (scripts/install-deps.sh does)", err)
	}
	dir := t.TempDir()
	args := []string{"--noout", "--nonet", "--schema", schema}
	for i, doc := range docs {
		f := filepath.Join(dir, strconv.Itoa(i)+".xml")
		require.NoError(t, os.WriteFile(f, []byte(doc), 0o600))
		args = append(args, f)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("xmllint: %v", err)
	}
	verdict := regexp.MustCompile(`(?m)^(\S+) (validates|fails to validate)$`)
	valid := make(map[string]bool)
	for _, m := range verdict.FindAllStringSubmatch(out.String(), -1) {
		valid[m[1]] = m[2] == "validates"
	}
	res := make([]bool, len(docs))
	for i := range docs {
		v, ok := valid[filepath.Join(dir, strconv.Itoa(i)+".xml")]
		require.True(t, ok, "xmllint said nothing about document %d:\n%s", i, out.String())
		res[i] = v
	}
	if t.Failed() || testing.Verbose() {
		t.Log(out.String())
	}
	return res
}

func readDoc(t *testing.T) (string, []block) {
	t.Helper()
	b, err := os.ReadFile(docPath)
	require.NoError(t, err)
	return string(b), blocks(t, string(b))
}

// Every XTLS element in an example of the document is valid against the
// schema and accepted by the decoder, and travels in the IQ type its
// element belongs in; every example marked invalid is refused by the
// decoder. Every element of the protocol has an example.
func TestExamples(t *testing.T) {
	_, bs := readDoc(t)
	var valid, invalid []payload
	for _, b := range bs {
		switch b.info {
		case "xml":
			valid = append(valid, payloads(t, b)...)
		case "xml invalid":
			ps := payloads(t, b)
			require.NotEmpty(t, ps, "protocol.md:%d: an invalid example without XTLS elements", b.line)
			invalid = append(invalid, ps...)
		}
	}
	require.NotEmpty(t, valid)
	seen := make(map[string]bool)
	docs := make([]string, len(valid))
	for i, p := range valid {
		seen[p.name] = true
		docs[i] = p.text
		_, err := decode(p.text)
		require.NoError(t, err, "%s: refused by stanza.Decode:\n%s", p.where, p.text)
		require.Equal(t, iqTypes[p.name], p.iqType, "%s: in the wrong IQ type", p.where)
	}
	for i, ok := range xmllint(t, schemaPath, docs) {
		require.True(t, ok, "%s: not valid against %s:\n%s", valid[i].where, schemaPath, valid[i].text)
	}
	for name := range iqTypes {
		require.True(t, seen[name], "no example of <%s>", name)
	}
	for _, p := range invalid {
		_, err := decode(p.text)
		require.Error(t, err, "%s: marked invalid, but stanza.Decode accepts it:\n%s", p.where, p.text)
	}
}

// The schema printed in the document is docs/xtls.xsd, and it is a valid
// XML Schema.
func TestSchemaInDocument(t *testing.T) {
	_, bs := readDoc(t)
	want, err := os.ReadFile(schemaPath)
	require.NoError(t, err)
	var found int
	for _, b := range bs {
		if b.info == "xsd" {
			found++
			require.Equal(t, string(want), b.text, "protocol.md:%d: the schema differs from %s", b.line, schemaPath)
		}
	}
	require.Equal(t, 1, found, "the document prints the schema once")
	// A schema xmllint cannot compile fails every document: check one that
	// must pass.
	ok := xmllint(t, schemaPath, []string{`<closed xmlns='urn:xmpp:xtls:0' sid='a'/>`})
	require.True(t, ok[0])
}

// The schema and the decoder agree, element by element, except where XML
// Schema 1.0 cannot express a rule (marked): the decoder is then the
// stricter.
func TestSchemaAgreesWithDecoder(t *testing.T) {
	cases := [...]struct {
		xml         string
		valid       bool
		schemaLoose bool // valid for the schema, refused by a business rule
	}{
		0:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='4096' window='4096'/>`, true, false},
		1:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='04096' window='16777216' method='x509' x='y' xmlns:p='urn:p' p:sid='z'/>`, true, false},
		2:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='4095' window='8192'/>`, false, false},
		3:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='65536' window='80000'/>`, false, false},
		4:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='8191'/>`, false, true},
		5:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='16777217'/>`, false, false},
		6:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='+8192' window='9000'/>`, false, false},
		7:  {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size=' 8192' window='9000'/>`, false, false},
		8:  {`<start xmlns='urn:xmpp:xtls:0' sid='a b' block-size='8192' window='9000'/>`, false, false},
		9:  {`<start xmlns='urn:xmpp:xtls:0' sid='` + strings.Repeat("a", 65) + `' block-size='8192' window='9000'/>`, false, false},
		10: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9000' method='otr'/>`, false, false},
		11: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9000'><x/></start>`, false, false},
		12: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9000'>text</start>`, false, false},
		13: {`<start xmlns='urn:xmpp:xtls:0' sid='a' block-size='8192' window='9000'> </start>`, true, false},
		14: {`<start xmlns='urn:xmpp:xtls:0' block-size='8192' window='9000'/>`, false, false},
		15: {`<proceed xmlns='urn:xmpp:xtls:0' sid='a' block-size='4096'/>`, false, false},
		16: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='65535'>AA==</data>`, true, false},
		17: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='65536'>AA==</data>`, false, false},
		18: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='-1'>AA==</data>`, false, false},
		19: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'></data>`, false, false},
		20: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AA</data>`, false, false},
		21: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AB==</data>`, false, false},
		22: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>A_==</data>`, false, false},
		23: {`<data xmlns='urn:xmpp:xtls:0' sid='a' seq='0'>AAAA<b/></data>`, false, false},
		24: {"<data xmlns='urn:xmpp:xtls:0' sid='a' seq='1'>\n aGVs\tbG8g\n d29y bGQ=\n</data>", true, false},
		25: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='0'/>`, true, false},
		26: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='9223372036854775807'/>`, true, false},
		27: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='9223372036854775808'/>`, false, false},
		28: {`<credit xmlns='urn:xmpp:xtls:0' sid='a' limit='-1'/>`, false, false},
		29: {`<credit xmlns='urn:xmpp:xtls:0' sid='a'/>`, false, false},
		30: {`<close xmlns='urn:xmpp:xtls:0' sid='a'/>`, true, false},
		31: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='undefined-condition'/>`, true, false},
		32: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error=''/>`, false, false},
		33: {`<close xmlns='urn:xmpp:xtls:0' sid='a' error='Gone'/>`, false, false},
		34: {`<closed xmlns='urn:xmpp:xtls:0' sid='a'/>`, true, false},
		35: {`<closed xmlns='urn:xmpp:xtls:0'/>`, false, false},
	}
	docs := make([]string, len(cases))
	for i, c := range cases {
		docs[i] = c.xml
	}
	schemaOK := xmllint(t, schemaPath, docs)
	for i, c := range cases {
		_, err := decode(c.xml)
		require.Equal(t, c.valid, err == nil, "%d: decoder: %v\n%s", i, err, c.xml)
		require.Equal(t, c.valid || c.schemaLoose, schemaOK[i], "%d: schema\n%s", i, c.xml)
	}
}

// Every link to a section of the document names a heading that exists
// (GitHub's anchors: lower case, punctuation dropped, spaces as hyphens).
func TestSectionLinks(t *testing.T) {
	doc, _ := readDoc(t)
	anchors := make(map[string]bool)
	inCode := false
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "```") {
			inCode = !inCode
		}
		if inCode || !strings.HasPrefix(l, "#") {
			continue
		}
		anchors[slug(strings.TrimSpace(strings.TrimLeft(l, "#")))] = true
	}
	links := regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(doc, -1)
	require.NotEmpty(t, links)
	for _, m := range links {
		require.True(t, anchors[m[1]], "link to #%s: no such heading", m[1])
	}
}

func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
