package controller

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// desiredKey is what a desired state is made from: an injector config and
// the --xds-ca-file content.
type desiredKey struct {
	in     *inject.Injector
	fileCA string
}

// caFile is --xds-ca-file, read again when its size or modification time
// changes (a kubelet Secret update swaps a symlink, which os.Stat follows),
// checked on the controller's ConfigPoll tick like the injector config,
// and by every sync (which takes the newest config before it writes): read
// is safe for concurrent use.
type caFile struct {
	path string

	mu    sync.Mutex
	cur   string // the last content that held a certificate
	data  []byte // the last content read, good or bad (a bad one is reported once)
	size  int64
	mtime time.Time
	read1 bool
}

// read returns the CA in use: the file's content when it holds a PEM
// certificate, else the previous good content with an error (once per
// change of the file).
func (f *caFile) read() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.path)
	if err != nil {
		if f.read1 && f.size == -1 {
			return f.cur, nil
		}
		f.read1, f.size = true, -1
		return f.cur, fmt.Errorf("--xds-ca-file %q: %w", f.path, err)
	}
	if f.read1 && st.Size() == f.size && st.ModTime().Equal(f.mtime) {
		return f.cur, nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return f.cur, fmt.Errorf("--xds-ca-file %q: %w", f.path, err)
	}
	f.read1, f.size, f.mtime = true, st.Size(), st.ModTime()
	if bytes.Equal(data, f.data) {
		return f.cur, nil
	}
	f.data = data
	if err := checkCAPEM(data); err != nil {
		return f.cur, fmt.Errorf("--xds-ca-file %q: %w", f.path, err)
	}
	f.cur = string(data)
	return f.cur, nil
}

// checkCAPEM says whether b holds at least one PEM certificate that parses
// and nothing that is not a certificate (never a private key).
func checkCAPEM(b []byte) error {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("holds a %s block: want only the CA certificate (ca.crt), never a key", blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("a certificate that does not parse: %w", err)
		}
		n++
	}
	if n == 0 {
		return errors.New("no PEM certificate: want the CA that signs the xDS server's certificate (cert-manager's ca.crt)")
	}
	return nil
}
