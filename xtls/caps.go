package xtls

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"hash"
	"slices"
	"strings"

	"mellium.im/xmpp/disco"
	"mellium.im/xmpp/disco/info"
	"mellium.im/xmpp/form"
	"mellium.im/xmpp/mux"
)

// Entity capabilities (XEP-0115): a client puts in its presence a <c/>
// element whose 'ver' is a hash of its disco#info (identities, features
// and extended forms). A contact who has seen that 'ver' before knows what
// the client supports without asking; otherwise it asks the client's
// disco#info for the node node#ver once, checks that the answer hashes to
// 'ver', and remembers the answer for every client that sends the same
// 'ver'.

// CapsNode is the 'node' of a Handler's entity capabilities: the software
// (XEP-0115 §4). A disco#info query for CapsNode#ver, with the ver of
// Handler.Caps, is answered like one for no node.
const CapsNode = "https://github.com/xmppxtls/xtls"

// capsHash is the hash a Handler uses for its own verification string:
// SHA-1, the one XEP-0115 makes mandatory to implement.
const capsHash = "sha-1"

// capsHashes are the hashes whose verification strings are checked, by
// their names in the IANA Hash Function Textual Names registry. A 'ver'
// made with another is not checked, and its answer is not cached
// (XEP-0115 §5.4, step 2).
var capsHashes = map[string]func() hash.Hash{
	"sha-1":   sha1.New,
	"sha-256": sha256.New,
	"sha-512": sha512.New,
}

// errIllFormed is a disco#info answer that XEP-0115 §5.4 calls ill-formed:
// an identity, a feature or a form type given twice, or a FORM_TYPE with
// several values.
var errIllFormed = errors.New("xtls: disco#info answer ill-formed for entity capabilities")

// capsVer returns the verification string of inf made with the hash h
// (XEP-0115 §5.1): S hashed, in Base64 with padding.
func capsVer(inf disco.Info, h hash.Hash) (string, error) {
	s, err := capsInput(inf)
	if err != nil {
		return "", err
	}
	h.Write(s)
	return base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// capsInput returns the string S of XEP-0115 §5.1 for inf. Sorting is by
// octets (i;octet); identities by category, then type, then xml:lang.
func capsInput(inf disco.Info) ([]byte, error) {
	var s bytes.Buffer
	ids := slices.Clone(inf.Identity)
	slices.SortFunc(ids, func(a, b info.Identity) int {
		return cmp.Or(strings.Compare(a.Category, b.Category), strings.Compare(a.Type, b.Type),
			strings.Compare(a.Lang, b.Lang), strings.Compare(a.Name, b.Name))
	})
	for i, id := range ids {
		if i > 0 && identityKey(ids[i-1]) == identityKey(id) {
			return nil, errIllFormed
		}
		s.WriteString(identityKey(id))
		s.WriteByte('<')
	}

	vars := make([]string, len(inf.Features))
	for i, f := range inf.Features {
		vars[i] = f.Var
	}
	slices.Sort(vars)
	for i, v := range vars {
		if i > 0 && vars[i-1] == v {
			return nil, errIllFormed
		}
		s.WriteString(v)
		s.WriteByte('<')
	}

	forms, err := capsForms(inf.Form)
	if err != nil {
		return nil, err
	}
	for _, f := range forms {
		s.WriteString(f.typ)
		s.WriteByte('<')
		for _, fd := range f.fields {
			s.WriteString(fd.Var)
			s.WriteByte('<')
			vals := slices.Clone(fd.Raw)
			slices.Sort(vals)
			for _, v := range vals {
				s.WriteString(v)
				s.WriteByte('<')
			}
		}
	}
	return s.Bytes(), nil
}

func identityKey(id info.Identity) string {
	return id.Category + "/" + id.Type + "/" + id.Lang + "/" + id.Name
}

// capsForm is an extended disco#info form (XEP-0128) as hashed: its
// FORM_TYPE and its other fields sorted by var.
type capsForm struct {
	typ    string
	fields []form.FieldData
}

// capsForms returns the forms that count for the hash, sorted by FORM_TYPE:
// those whose FORM_TYPE field is hidden (the others are ignored).
func capsForms(data []form.Data) ([]capsForm, error) {
	var out []capsForm
	for i := range data {
		f := capsForm{}
		hasType := false
		var err error
		data[i].ForFields(func(fd form.FieldData) {
			if fd.Var != "FORM_TYPE" {
				f.fields = append(f.fields, fd)
				return
			}
			if fd.Type != form.TypeHidden || len(fd.Raw) == 0 {
				return
			}
			for _, v := range fd.Raw[1:] {
				if v != fd.Raw[0] {
					err = errIllFormed
				}
			}
			f.typ, hasType = fd.Raw[0], true
		})
		if err != nil {
			return nil, err
		}
		if !hasType {
			continue
		}
		slices.SortFunc(f.fields, func(a, b form.FieldData) int { return strings.Compare(a.Var, b.Var) })
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b capsForm) int { return strings.Compare(a.typ, b.typ) })
	for i := 1; i < len(out); i++ {
		if out[i-1].typ == out[i].typ {
			return nil, errIllFormed
		}
	}
	return out, nil
}

// muxInfo returns the disco#info that disco.Handle answers for m with no
// node: the features, identities and forms of m's handlers, without
// repeats.
func muxInfo(m *mux.ServeMux) disco.Info {
	var inf disco.Info
	seen := make(map[string]bool)
	m.ForFeatures("", func(f info.Feature) error {
		if !seen[f.Var] {
			seen[f.Var] = true
			inf.Features = append(inf.Features, f)
		}
		return nil
	})
	seen = make(map[string]bool)
	m.ForIdentities("", func(id info.Identity) error {
		if k := identityKey(id); !seen[k] {
			seen[k] = true
			inf.Identity = append(inf.Identity, id)
		}
		return nil
	})
	m.ForForms("", func(d *form.Data) error {
		// disco.Handle sends the form as a submission; read it back as a
		// peer does.
		sub, _ := d.Submit()
		var f form.Data
		if err := xml.NewTokenDecoder(sub).Decode(&f); err == nil {
			inf.Form = append(inf.Form, f)
		}
		return nil
	})
	return inf
}
