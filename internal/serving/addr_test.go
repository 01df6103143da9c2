package serving

import (
	"strings"
	"testing"
)

func TestCheckAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr    string
		wantErr string
	}{
		{addr: ":8080"},
		{addr: "127.0.0.1:0"},
		{addr: "[::1]:65535"},
		{addr: "8080", wantErr: "want host:port"},
		{addr: "", wantErr: "want host:port"},
		{addr: "localhost:", wantErr: "want a port 0-65535"},
		{addr: ":65536", wantErr: "want a port 0-65535"},
		{addr: ":http", wantErr: "want a port 0-65535"},
	} {
		err := CheckAddress("--health-address", tc.addr)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "--health-address")) {
			t.Errorf("CheckAddress(%q) = %v, want an error with %q (none if empty) naming the flag", tc.addr, err, tc.wantErr)
		}
	}
}
