package xds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// Mesh settings file identity.
const (
	MeshAPIVersion = "sidecar.io/v1alpha1"
	MeshKind       = "MeshConfig"
)

// InboundUpstream says where the inbound listener sends a captured
// connection for an app port.
type InboundUpstream string

const (
	// UpstreamLoopback sends to 127.0.0.1:PORT (the default).
	UpstreamLoopback InboundUpstream = "loopback"
	// UpstreamPodIP sends to the pod IP the client dialled, for apps bound only
	// to it: the per-port cluster is ORIGINAL_DST, so one snapshot still serves
	// every pod with the same ports, and dual-stack pods work on both families.
	UpstreamPodIP InboundUpstream = "podIP"
)

// Access log encodings.
const (
	AccessLogText = "text"
	AccessLogJSON = "json"
)

// MeshSettings are the mesh-wide settings of the xDS server, read from a
// watched file (the chart mounts a ConfigMap). Every field has a default
// (DefaultMeshSettings), so an empty file is a working config.
type MeshSettings struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	// ConnectTimeout bounds every upstream connect of the sidecars.
	ConnectTimeout Duration `json:"connectTimeout"`
	// IdleTimeout closes proxied connections idle that long; 0s never does.
	IdleTimeout Duration `json:"idleTimeout"`
	// InboundUpstream is loopback (default) or podIP.
	InboundUpstream InboundUpstream `json:"inboundUpstream"`
	// AccessLog is one line per proxied connection on Envoy's stdout.
	AccessLog AccessLog `json:"accessLog"`
	// CircuitBreakers are the limits of every upstream cluster.
	CircuitBreakers CircuitBreakers `json:"circuitBreakers"`
}

// AccessLog configures the connection log of both listeners.
type AccessLog struct {
	Enabled bool `json:"enabled"`
	// Format is text (default) or json.
	Format string `json:"format"`
	// TextFormat replaces the built-in text line: an Envoy format string
	// (%START_TIME% ...). A newline is added when it has none.
	TextFormat string `json:"textFormat,omitempty"`
}

// CircuitBreakers are Envoy's default-priority thresholds.
type CircuitBreakers struct {
	MaxConnections     uint32 `json:"maxConnections"`
	MaxPendingRequests uint32 `json:"maxPendingRequests"`
	MaxRequests        uint32 `json:"maxRequests"`
	MaxRetries         uint32 `json:"maxRetries"`
}

// noLimit is the circuit-breaker default: a sidecar must not cap the app's
// connections behind its back (Envoy's own default is 1024).
const noLimit = 1<<32 - 1

// DefaultMeshSettings are the built-in settings, documented in the chart.
func DefaultMeshSettings() MeshSettings {
	return MeshSettings{
		APIVersion:      MeshAPIVersion,
		Kind:            MeshKind,
		ConnectTimeout:  Duration{5 * time.Second},
		IdleTimeout:     Duration{time.Hour},
		InboundUpstream: UpstreamLoopback,
		AccessLog:       AccessLog{Enabled: false, Format: AccessLogText},
		CircuitBreakers: CircuitBreakers{
			MaxConnections:     noLimit,
			MaxPendingRequests: noLimit,
			MaxRequests:        noLimit,
			MaxRetries:         noLimit,
		},
	}
}

// MaxMeshFileSize bounds the settings file.
const MaxMeshFileSize = 1 << 20

// LoadMeshSettings reads a settings file (YAML or JSON). Fields the file
// leaves out keep their defaults; unknown fields, duplicate keys and invalid
// values are errors naming the field.
func LoadMeshSettings(data []byte) (MeshSettings, error) {
	m := DefaultMeshSettings()
	if len(data) > MaxMeshFileSize {
		return MeshSettings{}, fmt.Errorf("mesh config: %d bytes, at most %d are allowed", len(data), MaxMeshFileSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return m, nil
	}
	if err := checkDurations(data); err != nil {
		return MeshSettings{}, err
	}
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return MeshSettings{}, fmt.Errorf("mesh config: %w", err)
	}
	if err := m.Validate(); err != nil {
		return MeshSettings{}, err
	}
	return m, nil
}

// Validate checks every field; the error names each wrong one.
func (m MeshSettings) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("mesh config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if m.APIVersion != MeshAPIVersion {
		bad("apiVersion", "%q: want %s", clip(m.APIVersion), MeshAPIVersion)
	}
	if m.Kind != MeshKind {
		bad("kind", "%q: want %s", clip(m.Kind), MeshKind)
	}
	if d := m.ConnectTimeout.Duration; d < time.Millisecond || d > time.Hour {
		bad("connectTimeout", "%v: want 1ms to 1h", d)
	}
	if d := m.IdleTimeout.Duration; d != 0 && (d < time.Second || d > 7*24*time.Hour) {
		bad("idleTimeout", "%v: want 0s (never) or 1s to 168h", d)
	}
	switch m.InboundUpstream {
	case UpstreamLoopback, UpstreamPodIP:
	default:
		bad("inboundUpstream", "%q: want loopback or podIP", clip(string(m.InboundUpstream)))
	}
	switch m.AccessLog.Format {
	case AccessLogText:
	case AccessLogJSON:
		if m.AccessLog.TextFormat != "" {
			bad("accessLog.textFormat", "set with format json; it applies to format text only")
		}
	default:
		bad("accessLog.format", "%q: want text or json", clip(m.AccessLog.Format))
	}
	if err := checkTextFormat(m.AccessLog.TextFormat); err != nil {
		bad("accessLog.textFormat", "%v", err)
	}
	for _, f := range []struct {
		name string
		v    uint32
	}{
		{"circuitBreakers.maxConnections", m.CircuitBreakers.MaxConnections},
		{"circuitBreakers.maxPendingRequests", m.CircuitBreakers.MaxPendingRequests},
		{"circuitBreakers.maxRequests", m.CircuitBreakers.MaxRequests},
		{"circuitBreakers.maxRetries", m.CircuitBreakers.MaxRetries},
	} {
		if f.v == 0 && f.name != "circuitBreakers.maxRetries" {
			bad(f.name, "0 would refuse every connection; want 1-4294967295")
		}
	}
	return errors.Join(errs...)
}

// checkDurations reads the duration fields first, so that a bad one is an
// error naming it (encoding/json does not say which field a custom
// unmarshaller failed on).
func checkDurations(data []byte) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("mesh config: %w", err)
	}
	var durations struct {
		ConnectTimeout json.RawMessage `json:"connectTimeout"`
		IdleTimeout    json.RawMessage `json:"idleTimeout"`
	}
	if json.Unmarshal(j, &durations) != nil {
		return nil // not an object: the strict decode says so
	}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"connectTimeout", durations.ConnectTimeout}, {"idleTimeout", durations.IdleTimeout}} {
		var d Duration
		if f.raw != nil {
			if err := d.UnmarshalJSON(f.raw); err != nil {
				return fmt.Errorf("mesh config: %s: %w", f.name, err)
			}
		}
	}
	return nil
}

// checkTextFormat catches what Envoy would reject in a format string as far
// as it can be seen without Envoy: the %COMMAND% delimiters must pair up.
func checkTextFormat(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > 4096 {
		return fmt.Errorf("%d bytes, at most 4096 are allowed", len(s))
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	if strings.ContainsRune(s, 0) {
		return errors.New("contains a NUL byte")
	}
	if n := strings.Count(strings.ReplaceAll(s, "%%", ""), "%"); n%2 != 0 {
		return errors.New("unbalanced '%': commands are written %COMMAND% and a literal percent sign %%")
	}
	return nil
}

// Duration is a time.Duration written as a Go duration string ("5s", "1h").
type Duration struct{ time.Duration }

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string like \"5s\" or \"1h\", got %s", clip(string(b)))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration like \"5s\" or \"1h\", got %q", clip(s))
	}
	d.Duration = v
	return nil
}

// clip shortens a value quoted in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "..."
}
