// Package testca is the certificate authority of the tests: a self-signed
// CA that issues serving and client certificates for loopback servers (the
// webhook, the xDS server, a local kube-apiserver), written atomically so
// the servers' certificate watchers can be tested with rotations.
package testca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority for local certificates.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
}

// New makes a self-signed CA (ECDSA P-256) valid from a minute ago for validity.
func New(commonName string, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("new CA %q: validity %s: want a positive duration", commonName, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: generate key: %w", commonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: sign: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA %q: parse: %w", commonName, err)
	}
	return &CA{Cert: cert, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}, nil
}

// Leaf describes a certificate to issue.
type Leaf struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Validity   time.Duration
	// Client makes a client certificate; otherwise a serving one.
	Client bool
	// Organizations become the subject's O (Kubernetes groups for clients).
	Organizations []string
	// Serial, if not zero, is the serial number (tests that tell
	// certificates apart by it); else a random one.
	Serial int64
	// NotAfter, if set, replaces now+Validity (an expiry a test chooses).
	NotAfter time.Time
}

// LoopbackServing is a serving certificate for 127.0.0.1, ::1 and localhost.
func LoopbackServing(commonName string, validity time.Duration) Leaf {
	return Leaf{
		CommonName: commonName,
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		Validity:   validity,
	}
}

// KeyPair is a PEM certificate and its PEM (PKCS #8) key.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
}

// Issue signs a new leaf certificate with a fresh ECDSA P-256 key.
func (ca *CA) Issue(l Leaf) (KeyPair, error) {
	if l.Validity <= 0 && l.NotAfter.IsZero() {
		return KeyPair{}, fmt.Errorf("issue %q: validity %s: want a positive duration", l.CommonName, l.Validity)
	}
	if !l.Client && len(l.DNSNames) == 0 && len(l.IPs) == 0 {
		return KeyPair{}, fmt.Errorf("issue %q: a serving certificate needs at least one DNS name or IP", l.CommonName)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue %q: generate key: %w", l.CommonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return KeyPair{}, err
	}
	if l.Serial != 0 {
		serial = big.NewInt(l.Serial)
	}
	now := time.Now()
	notAfter := now.Add(l.Validity)
	if !l.NotAfter.IsZero() {
		notAfter = l.NotAfter
	}
	usage := x509.ExtKeyUsageServerAuth
	if l.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: l.CommonName, Organization: l.Organizations},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     l.DNSNames,
		IPAddresses:  l.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue %q: sign: %w", l.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue %q: parse: %w", l.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return KeyPair{}, fmt.Errorf("issue %q: marshal key: %w", l.CommonName, err)
	}
	return KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Cert:    cert,
	}, nil
}

// WriteFiles writes the pair to certFile and keyFile (key mode 0600), each
// through WriteFile.
func (kp KeyPair) WriteFiles(certFile, keyFile string) error {
	if err := WriteFile(certFile, kp.CertPEM, 0o644); err != nil {
		return err
	}
	return WriteFile(keyFile, kp.KeyPEM, 0o600)
}

// Pool is a certificate pool trusting only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// WriteFile writes data to path through a temporary file and a rename, so a
// reader (a certificate watcher) never sees a half-written file.
func WriteFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(f.Name(), mode)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// LoopbackFiles makes a CA valid for validity and a serving certificate
// under it for 127.0.0.1, ::1 and localhost, written to dir/tls.crt and
// dir/tls.key: what a test needs to serve TLS on loopback.
func LoopbackFiles(dir, commonName string, validity time.Duration) (ca *CA, certFile, keyFile string, err error) {
	if ca, err = New(commonName+"-ca", validity); err != nil {
		return nil, "", "", err
	}
	kp, err := ca.Issue(LoopbackServing(commonName, validity))
	if err != nil {
		return nil, "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := kp.WriteFiles(certFile, keyFile); err != nil {
		return nil, "", "", err
	}
	return ca, certFile, keyFile, nil
}
