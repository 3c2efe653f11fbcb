package xtls

// The control records of contract 4, for tests that play a peer which
// says something unexpected inside TLS.
const (
	RecAccept = recAccept
	RecRefuse = recRefuse
)

// WriteRecord writes one contract 4 control record on c, as its peer would
// read it.
func WriteRecord(c *Conn, typ byte, body []byte) error { return c.writeRecord(typ, body) }
