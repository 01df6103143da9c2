package serving

import "crypto/tls"

// TLS versions a server's --tls-min-version accepts.
const (
	TLS12 = "1.2"
	TLS13 = "1.3"
)

// TLSConfig is the TLS of every server (RELIABILITY.md "Server
// settings"): TLS 1.2 or later (1.3 when minVersion is TLS13), ECDHE with
// AEAD suites only for 1.2, and the certificate from get at every
// handshake (CertSource.GetCertificate).
func TLSConfig(minVersion string, get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{ // TLS 1.2 only; 1.3 suites are all AEAD and not configurable
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		GetCertificate: get,
	}
	if minVersion == TLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	return c
}
