package serving

import (
	"fmt"
	"net"
	"strconv"
)

// CheckAddress says what is wrong with addr, the value of the listen-address
// flag named flag ("--health-address"): it wants host:port or :port, with
// a port 0-65535 (0: any free port).
func CheckAddress(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want host:port or :port, such as :8080 (%v)", flag, addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s %q: want a port 0-65535, such as :8080", flag, addr)
	}
	return nil
}
