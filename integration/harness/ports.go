package harness

import (
	"fmt"
	"net"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago:
// it listens on port 0, reads the port the kernel chose, and closes.
// Another program may take the port before the server binds it;
// the server's start then fails with an error rather than hanging.
func FreePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts returns n distinct free ports, holding every listener open until
// all are chosen so that the kernel cannot hand out the same port twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("harness: free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// fillPorts replaces every zero among ports with a distinct free port.
func fillPorts(ports ...*int) error {
	var missing []*int
	for _, p := range ports {
		if *p == 0 {
			missing = append(missing, p)
		}
	}
	free, err := freePorts(len(missing))
	if err != nil {
		return err
	}
	for i, p := range missing {
		*p = free[i]
	}
	return nil
}
