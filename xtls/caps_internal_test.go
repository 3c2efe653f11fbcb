package xtls

import (
	"crypto/sha1"
	"encoding/xml"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"mellium.im/xmpp/disco"
)

// The examples of XEP-0115 §5.2 and §5.3, and what §5.4 calls ill-formed.
var capsVerTests = [...]struct {
	query string // a disco#info answer
	ver   string // its verification string with SHA-1
	err   error
}{
	0: { // §5.2, simple
		query: `<query xmlns='http://jabber.org/protocol/disco#info'>
			<identity category='client' name='Exodus 0.9.1' type='pc'/>
			<feature var='http://jabber.org/protocol/caps'/>
			<feature var='http://jabber.org/protocol/disco#info'/>
			<feature var='http://jabber.org/protocol/disco#items'/>
			<feature var='http://jabber.org/protocol/muc'/>
		</query>`,
		ver: "QgayPKawpkPSDYmwT/WM94uAlu0=",
	},
	1: { // §5.3, complex: two languages and a form; order does not matter
		query: complexQuery,
		ver:   "q07IKJEyjvHSyhy//CH0CxmKi8w=",
	},
	2: { // the same features in another order
		query: `<query xmlns='http://jabber.org/protocol/disco#info'>
			<feature var='http://jabber.org/protocol/muc'/>
			<feature var='http://jabber.org/protocol/disco#items'/>
			<identity category='client' name='Exodus 0.9.1' type='pc'/>
			<feature var='http://jabber.org/protocol/disco#info'/>
			<feature var='http://jabber.org/protocol/caps'/>
		</query>`,
		ver: "QgayPKawpkPSDYmwT/WM94uAlu0=",
	},
	3: { // a form whose FORM_TYPE is not hidden is ignored
		query: `<query xmlns='http://jabber.org/protocol/disco#info'>
			<identity category='client' name='Exodus 0.9.1' type='pc'/>
			<feature var='http://jabber.org/protocol/caps'/>
			<feature var='http://jabber.org/protocol/disco#info'/>
			<feature var='http://jabber.org/protocol/disco#items'/>
			<feature var='http://jabber.org/protocol/muc'/>
			<x xmlns='jabber:x:data' type='result'>
				<field var='FORM_TYPE'><value>urn:example:t</value></field>
				<field var='os'><value>Mac</value></field>
			</x>
		</query>`,
		ver: "QgayPKawpkPSDYmwT/WM94uAlu0=",
	},
	4: {
		query: `<query xmlns='http://jabber.org/protocol/disco#info'>
			<identity category='client' name='A' type='pc'/>
			<identity category='client' name='A' type='pc'/>
		</query>`,
		err: errIllFormed,
	},
	5: {
		query: `<query xmlns='http://jabber.org/protocol/disco#info'>
			<feature var='urn:xmpp:xtls:0'/>
			<feature var='urn:xmpp:xtls:0'/>
		</query>`,
		err: errIllFormed,
	},
	6: {
		query: `<query xmlns='http://jabber.org/protocol/disco#info'>
			<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:example:t</value></field></x>
			<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:example:t</value></field></x>
		</query>`,
		err: errIllFormed,
	},
	7: {
		query: `<query xmlns='http://jabber.org/protocol/disco#info'>
			<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'>
				<value>urn:example:t</value><value>urn:example:u</value></field></x>
		</query>`,
		err: errIllFormed,
	},
}

const complexQuery = `<query xmlns='http://jabber.org/protocol/disco#info'
         node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
    <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
    <identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
    <feature var='http://jabber.org/protocol/caps'/>
    <feature var='http://jabber.org/protocol/disco#info'/>
    <feature var='http://jabber.org/protocol/disco#items'/>
    <feature var='http://jabber.org/protocol/muc'/>
    <x xmlns='jabber:x:data' type='result'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:dataforms:softwareinfo</value>
      </field>
      <field var='ip_version'>
        <value>ipv4</value>
        <value>ipv6</value>
      </field>
      <field var='os'>
        <value>Mac</value>
      </field>
      <field var='os_version'>
        <value>10.5.1</value>
      </field>
      <field var='software'>
        <value>Psi</value>
      </field>
      <field var='software_version'>
        <value>0.11</value>
      </field>
    </x>
  </query>`

func TestCapsVer(t *testing.T) {
	for i, tc := range capsVerTests {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			var inf disco.Info
			require.NoError(t, xml.Unmarshal([]byte(tc.query), &inf))
			ver, err := capsVer(inf, sha1.New())
			require.ErrorIs(t, err, tc.err)
			require.Equal(t, tc.ver, ver)
		})
	}
}
