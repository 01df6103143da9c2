package testenv

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"time"

	"github.com/sidecar-injector/sidecar-injector/internal/testca"
)

// The local CA is internal/testca, which the unit tests share; these names
// keep it reachable from the control plane's users.
type (
	// CA is a certificate authority for local certificates.
	CA = testca.CA
	// Leaf describes a certificate to issue.
	Leaf = testca.Leaf
	// KeyPair is a PEM certificate and its PEM (PKCS #8) key.
	KeyPair = testca.KeyPair
)

// NewCA makes a self-signed CA valid from a minute ago for validity.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	return testca.New(commonName, validity)
}

// LoopbackFiles makes a CA and a loopback serving pair under it, written
// to dir/tls.crt and dir/tls.key.
func LoopbackFiles(dir, commonName string, validity time.Duration) (ca *CA, certFile, keyFile string, err error) {
	return testca.LoopbackFiles(dir, commonName, validity)
}

// LoopbackServing is a serving certificate for 127.0.0.1, ::1 and localhost.
func LoopbackServing(commonName string, validity time.Duration) Leaf {
	return testca.LoopbackServing(commonName, validity)
}

// ServiceAccountKey is the key pair the apiserver signs service-account
// tokens with (RSA 2048, which every Kubernetes version accepts).
type ServiceAccountKey struct {
	PrivatePEM []byte // PKCS #8
	PublicPEM  []byte // PKIX
}

// NewServiceAccountKey generates a service-account signing key.
func NewServiceAccountKey() (ServiceAccountKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return ServiceAccountKey{}, fmt.Errorf("service-account key: generate: %w", err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return ServiceAccountKey{}, fmt.Errorf("service-account key: marshal: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return ServiceAccountKey{}, fmt.Errorf("service-account key: marshal public: %w", err)
	}
	return ServiceAccountKey{
		PrivatePEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		PublicPEM:  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	}, nil
}

// writeFile writes data to path atomically (testca.WriteFile).
func writeFile(path string, data []byte, mode os.FileMode) error {
	return testca.WriteFile(path, data, mode)
}
