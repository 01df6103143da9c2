package inject

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// Config file identity.
const (
	ConfigAPIVersion = "sidecar.io/v1alpha1"
	ConfigKind       = "InjectorConfig"
)

// Default images. The proxy image is the Envoy line whose API our
// go-control-plane/envoy module (v1.40.0) describes: bump the two together.
// The init image is this project's, from its release registry path.
const (
	DefaultProxyImage = "envoyproxy/envoy:v1.40.0"
	DefaultInitImage  = "ghcr.io/sidecar-injector/iptables-init:v0.1.0"
)

// Public names of DESIGN.md.
const (
	NamespaceLabel   = "sidecar-injection" // enabled | disabled | audit
	InjectKey        = "sidecar.io/inject" // pod label (or annotation): "true" | "false"
	StatusAnnotation = "sidecar.io/status"
	SettingPrefix    = "sidecar.io/"

	ProxyContainerName = "envoy"
	InitContainerName  = "iptables-init"
	ConfigVolumeName   = "envoy-config"
	ConfigMapName      = "envoy-config"
	ConfigMapKey       = "envoy.yaml"
	ConfigMountPath    = "/etc/envoy"

	MirrorPodAnnotation = "kubernetes.io/config.mirror"
)

// NativeSidecarMode says whether Envoy is a native sidecar (an init container
// with restartPolicy Always) or a classic first regular container.
type NativeSidecarMode string

const (
	NativeAuto  NativeSidecarMode = "auto" // native when the cluster supports it (Kubernetes 1.29+)
	NativeTrue  NativeSidecarMode = "true"
	NativeFalse NativeSidecarMode = "false"
)

// Policy is what happens to pods without a sidecar.io/inject label in
// namespaces without a sidecar-injection label.
type Policy string

const (
	PolicyDisabled Policy = "disabled"
	PolicyEnabled  Policy = "enabled"
)

// Config is the injector config file (YAML or JSON). Unknown fields are
// errors. Every field has a default (DefaultConfig), so an empty file, or no
// file, is a working config.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`

	Proxy     ProxyConfig     `json:"proxy"`
	Ports     PortsConfig     `json:"ports"`
	Redirect  RedirectConfig  `json:"redirect"`
	Injection InjectionConfig `json:"injection"`
	XDS       XDSConfig       `json:"xds"`
}

// ProxyConfig describes the two containers the injector adds.
type ProxyConfig struct {
	Image           string                      `json:"image"`
	InitImage       string                      `json:"initImage"`
	ImagePullPolicy corev1.PullPolicy           `json:"imagePullPolicy,omitempty"`
	UID             int64                       `json:"uid"`
	GID             *int64                      `json:"gid,omitempty"`
	LogLevel        string                      `json:"logLevel"`
	NativeSidecar   NativeSidecarMode           `json:"nativeSidecar"`
	Resources       corev1.ResourceRequirements `json:"resources"`
	InitResources   corev1.ResourceRequirements `json:"initResources"`
	// ConcurrencyFromCPU sets Envoy's --concurrency from the CPU limit (or
	// request), rounded up, at least 1; otherwise 2.
	Concurrency int32 `json:"concurrency"`
	// MaxCPU and MaxMemory bound what a pod may ask for with the
	// sidecar.io/proxy-cpu and sidecar.io/proxy-memory settings.
	MaxCPU    resource.Quantity `json:"maxCPU"`
	MaxMemory resource.Quantity `json:"maxMemory"`
}

// PortsConfig holds the proxy's default ports and the range conflicts move
// them into.
type PortsConfig struct {
	Inbound  uint16 `json:"inbound"`
	Outbound uint16 `json:"outbound"`
	Stats    uint16 `json:"stats"`
	Admin    uint16 `json:"admin"`
	// RangeStart..RangeEnd is where a proxy port moves when the app uses it.
	RangeStart uint16 `json:"rangeStart"`
	RangeEnd   uint16 `json:"rangeEnd"`
}

// RedirectConfig holds the cluster-wide traffic redirection defaults; pods
// adjust them with setting annotations where allowed.
type RedirectConfig struct {
	IPTablesMode            redirect.Mode     `json:"iptablesMode"`
	IPv6                    redirect.IPv6Mode `json:"ipv6"`
	ExcludeOutboundIPRanges string            `json:"excludeOutboundIPRanges"`
	ExcludeOutboundPorts    string            `json:"excludeOutboundPorts"`
	ExcludeInboundPorts     string            `json:"excludeInboundPorts"`
}

// InjectionConfig holds who gets a sidecar and what pods may change.
type InjectionConfig struct {
	DefaultPolicy Policy `json:"defaultPolicy"`
	// InjectorNamespace is the injector's own namespace: never injected.
	InjectorNamespace string `json:"injectorNamespace"`
	// ExcludedNamespaces are never injected (kube-system, kube-public and
	// kube-node-lease always are, whatever this says).
	ExcludedNamespaces []string `json:"excludedNamespaces"`
	// AllowedSettings lists the sidecar.io/<setting> annotations pods may use.
	AllowedSettings []string `json:"allowedSettings"`
	// Prometheus adds prometheus.io/scrape|port|path annotations for Envoy's
	// stats unless the pod has its own.
	PrometheusAnnotations bool `json:"prometheusAnnotations"`
}

// XDSConfig says where Envoy finds the xDS server. It is recorded in the
// envoy-config bootstrap; the engine only hashes it.
type XDSConfig struct {
	Address string `json:"address"`
	Port    uint16 `json:"port"`
	// CACert (PEM), when set, makes Envoy talk TLS to the xDS server and
	// verify its certificate, for Address, against this CA: the controller
	// puts it into every envoy-config ConfigMap next to the bootstrap.
	CACert string `json:"caCert,omitempty"`
	// TLS, with CACert empty, makes Envoy talk TLS to the xDS server with a
	// CA the controller reads from its --xds-ca-file (cert-manager's
	// ca.crt, not known when the config is written). The hash covers this
	// flag, not that CA's content: the webhook, which never reads the file,
	// computes the same hash, and a CA change alone marks no pod stale.
	TLS bool `json:"tls,omitempty"`
}

// TLSEnabled says whether Envoy talks TLS to the xDS server: with an inline
// CACert, or with TLS set (the controller's --xds-ca-file).
func (x XDSConfig) TLSEnabled() bool { return x.TLS || x.CACert != "" }

// AlwaysExcludedNamespaces are never injected.
var alwaysExcludedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// DefaultConfig is the built-in configuration, documented in the README.
func DefaultConfig() Config {
	return Config{
		APIVersion: ConfigAPIVersion,
		Kind:       ConfigKind,
		Proxy: ProxyConfig{
			Image:         DefaultProxyImage,
			InitImage:     DefaultInitImage,
			UID:           redirect.DefaultProxyUID,
			LogLevel:      "info",
			NativeSidecar: NativeAuto,
			Concurrency:   2,
			MaxCPU:        resource.MustParse("2"),
			MaxMemory:     resource.MustParse("2Gi"),
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("100m"),
					corev1.ResourceMemory: resource.MustParse("128Mi"),
				},
				Limits: corev1.ResourceList{
					corev1.ResourceMemory: resource.MustParse("512Mi"),
				},
			},
			InitResources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("10m"),
					corev1.ResourceMemory: resource.MustParse("16Mi"),
				},
				Limits: corev1.ResourceList{
					corev1.ResourceMemory: resource.MustParse("64Mi"),
				},
			},
		},
		Ports: PortsConfig{
			Inbound:    redirect.DefaultInboundPort,
			Outbound:   redirect.DefaultOutboundPort,
			Stats:      10090,
			Admin:      9901,
			RangeStart: 10001,
			RangeEnd:   10199,
		},
		Redirect: RedirectConfig{
			IPTablesMode: redirect.ModeAuto,
			IPv6:         redirect.IPv6Auto,
		},
		Injection: InjectionConfig{
			DefaultPolicy:         PolicyDisabled,
			InjectorNamespace:     "sidecar-injector",
			AllowedSettings:       DefaultAllowedSettings(),
			PrometheusAnnotations: true,
		},
		XDS: XDSConfig{
			Address: "sidecar-injector-xds.sidecar-injector.svc",
			Port:    18000,
		},
	}
}

// LoadConfig reads a config file. Fields the file leaves out keep their
// defaults; unknown fields and invalid values are errors naming the field.
func LoadConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return Config{}, fmt.Errorf("injector config: not valid YAML: %w", err)
	}
	if !bytes.HasPrefix(js, []byte("{")) {
		return Config{}, fmt.Errorf("injector config: want a YAML mapping with apiVersion: %s and kind: %s", ConfigAPIVersion, ConfigKind)
	}
	// One strict decode: case-sensitive keys, unknown fields named by path.
	strict, err := kjson.UnmarshalStrict(js, &cfg)
	if err != nil {
		return Config{}, fmt.Errorf("injector config: %w", err)
	}
	if len(strict) > 0 {
		return Config{}, fmt.Errorf("injector config: %w", errors.Join(strict...))
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate checks every field and names the first wrong one.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("injector config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.APIVersion != ConfigAPIVersion {
		bad("apiVersion", "%q: want %s", c.APIVersion, ConfigAPIVersion)
	}
	if c.Kind != ConfigKind {
		bad("kind", "%q: want %s", c.Kind, ConfigKind)
	}
	if strings.TrimSpace(c.Proxy.Image) == "" {
		bad("proxy.image", "must not be empty")
	}
	if strings.TrimSpace(c.Proxy.InitImage) == "" {
		bad("proxy.initImage", "must not be empty")
	}
	switch c.Proxy.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		bad("proxy.imagePullPolicy", "%q: want Always, IfNotPresent or Never", c.Proxy.ImagePullPolicy)
	}
	if c.Proxy.UID < 1 || c.Proxy.UID > 2147483647 {
		bad("proxy.uid", "%d: want a non-root UID 1-2147483647", c.Proxy.UID)
	}
	if c.Proxy.GID != nil && (*c.Proxy.GID < 0 || *c.Proxy.GID > 2147483647) {
		bad("proxy.gid", "%d: want 0-2147483647", *c.Proxy.GID)
	}
	if !slices.Contains(logLevels, c.Proxy.LogLevel) {
		bad("proxy.logLevel", "%q: want one of %s", c.Proxy.LogLevel, strings.Join(logLevels, ", "))
	}
	switch c.Proxy.NativeSidecar {
	case NativeAuto, NativeTrue, NativeFalse:
	default:
		bad("proxy.nativeSidecar", "%q: want auto, true or false", c.Proxy.NativeSidecar)
	}
	if c.Proxy.Concurrency < 0 || c.Proxy.Concurrency > 64 {
		bad("proxy.concurrency", "%d: want 0 (from the CPU limit) to 64", c.Proxy.Concurrency)
	}
	if c.Proxy.MaxCPU.Sign() <= 0 {
		bad("proxy.maxCPU", "%s: want a positive CPU quantity such as 2", c.Proxy.MaxCPU.String())
	}
	if c.Proxy.MaxMemory.Sign() <= 0 {
		bad("proxy.maxMemory", "%s: want a positive memory quantity such as 2Gi", c.Proxy.MaxMemory.String())
	}
	p := c.Ports
	for _, f := range []struct {
		name string
		v    uint16
	}{{"ports.inbound", p.Inbound}, {"ports.outbound", p.Outbound}, {"ports.stats", p.Stats}, {"ports.admin", p.Admin}, {"ports.rangeStart", p.RangeStart}, {"ports.rangeEnd", p.RangeEnd}} {
		if f.v == 0 {
			bad(f.name, "want a port 1-65535")
		}
	}
	if p.RangeEnd < p.RangeStart {
		bad("ports.rangeEnd", "%d is below rangeStart %d", p.RangeEnd, p.RangeStart)
	}
	if ports := []uint16{p.Inbound, p.Outbound, p.Stats, p.Admin}; len(slices.Compact(slices.Sorted(slices.Values(ports)))) != len(ports) {
		bad("ports", "inbound, outbound, stats and admin must be four different ports")
	}
	if _, err := redirect.ParseMode(string(c.Redirect.IPTablesMode)); err != nil {
		bad("redirect.iptablesMode", "%v", err)
	}
	if _, err := redirect.ParseIPv6Mode(string(c.Redirect.IPv6)); err != nil {
		bad("redirect.ipv6", "%v", err)
	}
	if _, err := redirect.ParseCIDRList(c.Redirect.ExcludeOutboundIPRanges); err != nil {
		bad("redirect.excludeOutboundIPRanges", "%v", err)
	}
	if _, err := redirect.ParsePortList(c.Redirect.ExcludeOutboundPorts); err != nil {
		bad("redirect.excludeOutboundPorts", "%v", err)
	}
	if _, err := redirect.ParsePortList(c.Redirect.ExcludeInboundPorts); err != nil {
		bad("redirect.excludeInboundPorts", "%v", err)
	}
	switch c.Injection.DefaultPolicy {
	case PolicyDisabled, PolicyEnabled:
	default:
		bad("injection.defaultPolicy", "%q: want disabled or enabled", c.Injection.DefaultPolicy)
	}
	if ns := c.Injection.InjectorNamespace; ns != "" && len(validation.IsDNS1123Label(ns)) > 0 {
		bad("injection.injectorNamespace", "%q: not a namespace name", ns)
	}
	for i, ns := range c.Injection.ExcludedNamespaces {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			bad(fmt.Sprintf("injection.excludedNamespaces[%d]", i), "%q: not a namespace name", ns)
		}
	}
	for i, s := range c.Injection.AllowedSettings {
		if !slices.Contains(SettingNames(), s) {
			bad(fmt.Sprintf("injection.allowedSettings[%d]", i), "%q: unknown setting; known: %s", s, strings.Join(SettingNames(), ", "))
		}
	}
	if strings.TrimSpace(c.XDS.Address) == "" {
		bad("xds.address", "must not be empty")
	}
	if c.XDS.Port == 0 {
		bad("xds.port", "want a port 1-65535")
	}
	if c.XDS.CACert != "" {
		if rest := []byte(c.XDS.CACert); !hasPEMCertificate(rest) {
			bad("xds.caCert", "not a PEM certificate: want the CA that signs the xDS server's certificate, or nothing for plaintext")
		}
	}
	return errors.Join(errs...)
}

var logLevels = []string{"trace", "debug", "info", "warning", "warn", "error", "critical", "off"}

// Hash is the config hash recorded in every injected pod's status: the
// first 16 hex digits of the SHA-256 of the canonical JSON of podShape, the
// part of the config that shapes an injected pod. Edits that change no pod
// (which namespaces are injected, which settings pods may use) keep the
// hash, so they mark no running pod stale.
func (c Config) Hash() string {
	b, err := json.Marshal(c.podShape())
	if err != nil {
		// Config holds only plain values: marshalling cannot fail.
		panic(fmt.Sprintf("marshal injector config: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// podShape is what of a Config an injected pod is made of: the containers
// (proxy), the ports chosen and recorded in the node metadata (ports), the
// iptables-init arguments (redirect), the prometheus.io annotations, and
// the xDS address the mounted envoy-config bootstrap points at (read by
// Envoy only when it starts, so a change needs a restart like the others).
// Left out: apiVersion and kind, proxy.maxCPU and maxMemory, and injection's defaultPolicy,
// injectorNamespace, excludedNamespaces and allowedSettings, which decide
// whether a pod is injected, never how. TestHashCoversThePodShape lists
// every field.
type podShape struct {
	Proxy                 ProxyConfig    `json:"proxy"`
	Ports                 PortsConfig    `json:"ports"`
	Redirect              RedirectConfig `json:"redirect"`
	PrometheusAnnotations bool           `json:"prometheusAnnotations"`
	XDS                   XDSConfig      `json:"xds"`
}

func (c Config) podShape() podShape {
	proxy := c.Proxy
	// What a pod may ask for is checked at admission; no pod is made
	// differently.
	proxy.MaxCPU, proxy.MaxMemory = resource.Quantity{}, resource.Quantity{}
	return podShape{Proxy: proxy, Ports: c.Ports, Redirect: c.Redirect, PrometheusAnnotations: c.Injection.PrometheusAnnotations, XDS: c.XDS}
}

func (c Config) excludedNamespace(ns string) bool {
	return slices.Contains(alwaysExcludedNamespaces, ns) || slices.Contains(c.Injection.ExcludedNamespaces, ns)
}

// hasPEMCertificate says whether b holds at least one PEM CERTIFICATE
// block that parses.
func hasPEMCertificate(b []byte) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if block.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(block.Bytes); err == nil {
				return true
			}
		}
	}
}
