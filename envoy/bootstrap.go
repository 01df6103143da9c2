package envoy

import (
	_ "embed" // the bootstrap template
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

//go:embed bootstrap.yaml
var bootstrapTemplate []byte

// Names of the static clusters of the bootstrap; the xDS server's stats
// listener routes to AdminCluster.
const (
	XDSCluster   = "xds"
	AdminCluster = "admin"
)

// DefaultAdminPort is the admin port: 127.0.0.1 only, never exposed.
const DefaultAdminPort = 9901

// BootstrapConfig holds the values of the bootstrap; everything else is in
// the embedded template.
type BootstrapConfig struct {
	// XDSAddress is the xDS Service: a DNS name (resolved by Envoy, STRICT_DNS)
	// or an IP address.
	XDSAddress string
	// XDSPort is the xDS gRPC port.
	XDSPort uint32
	// AdminPort is the admin port on 127.0.0.1.
	AdminPort uint32
	// XDSConnectTimeout bounds the TCP (and TLS) connect to the xDS server.
	XDSConnectTimeout time.Duration
	// XDSKeepaliveInterval is the HTTP/2 PING interval on the xDS connection;
	// XDSKeepaliveTimeout how long a PING may stay unanswered before Envoy
	// drops the connection and reconnects. The server's keepalive enforcement
	// must allow the interval.
	XDSKeepaliveInterval time.Duration
	XDSKeepaliveTimeout  time.Duration
	// XDSTLS, when set, makes Envoy talk TLS to the xDS server.
	XDSTLS *XDSTLS
}

// XDSTLS is how Envoy verifies the xDS server.
type XDSTLS struct {
	// CAFile is the PEM bundle, inside the Envoy container, that signs the
	// xDS server's certificate.
	CAFile string
	// ServerName is the SNI and the name verified in the certificate;
	// XDSAddress when empty.
	ServerName string
}

// DefaultBootstrapConfig is the chart's default: the xDS Service in the
// sidecar-injector namespace.
func DefaultBootstrapConfig() BootstrapConfig {
	return BootstrapConfig{
		XDSAddress:           "sidecar-injector-xds.sidecar-injector.svc",
		XDSPort:              18000,
		AdminPort:            DefaultAdminPort,
		XDSConnectTimeout:    5 * time.Second,
		XDSKeepaliveInterval: 30 * time.Second,
		XDSKeepaliveTimeout:  10 * time.Second,
	}
}

// Validate says what is wrong with c and how to fix it.
func (c BootstrapConfig) Validate() error {
	var errs []error
	if c.XDSAddress == "" {
		errs = append(errs, errors.New("xDS address empty: want the DNS name or IP of the xDS Service"))
	} else if _, err := netip.ParseAddr(c.XDSAddress); err != nil {
		if msgs := validation.IsDNS1123Subdomain(c.XDSAddress); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("xDS address %q: want an IP address or a DNS name (%s)", truncate(c.XDSAddress), msgs[0]))
		}
	}
	for _, p := range []struct {
		name string
		v    uint32
	}{{"xDS port", c.XDSPort}, {"admin port", c.AdminPort}} {
		if p.v == 0 || p.v > math.MaxUint16 {
			errs = append(errs, fmt.Errorf("%s %d: want a port 1-65535", p.name, p.v))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"xDS connect timeout", c.XDSConnectTimeout}, {"xDS keepalive interval", c.XDSKeepaliveInterval}, {"xDS keepalive timeout", c.XDSKeepaliveTimeout}} {
		if d.v < time.Millisecond || d.v > time.Hour {
			errs = append(errs, fmt.Errorf("%s %v: want 1ms to 1h", d.name, d.v))
		}
	}
	if c.XDSTLS != nil && c.XDSTLS.CAFile == "" {
		errs = append(errs, errors.New("xDS TLS without a CA file: set the path of the CA bundle in the Envoy container"))
	}
	return errors.Join(errs...)
}

// Bootstrap builds the bootstrap proto: the embedded template with c's values
// set, checked with ValidateDeep.
func Bootstrap(c BootstrapConfig) (*bootstrapv3.Bootstrap, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("bootstrap config: %w", err)
	}
	b, err := ParseBootstrap(bootstrapTemplate)
	if err != nil {
		return nil, fmt.Errorf("embedded bootstrap template: %w", err)
	}
	admin := staticCluster(b, AdminCluster)
	xds := staticCluster(b, XDSCluster)
	adminEP, ep := endpointAddress(admin), endpointAddress(xds)
	if b.GetAdmin().GetAddress().GetSocketAddress() == nil || adminEP == nil || ep == nil {
		return nil, errors.New("embedded bootstrap template: want an admin socket address and clusters xds and admin with one endpoint each")
	}
	b.GetAdmin().GetAddress().GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: c.AdminPort}
	adminEP.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: c.AdminPort}

	ep.Address = c.XDSAddress
	ep.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: c.XDSPort}
	if _, err := netip.ParseAddr(c.XDSAddress); err == nil {
		xds.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
		xds.DnsLookupFamily = clusterv3.Cluster_AUTO
	}
	xds.ConnectTimeout = durationpb.New(c.XDSConnectTimeout)

	const httpOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	opts := &httpv3.HttpProtocolOptions{}
	if err := xds.GetTypedExtensionProtocolOptions()[httpOptions].UnmarshalTo(opts); err != nil {
		return nil, fmt.Errorf("embedded bootstrap template: xds %s: %w", httpOptions, err)
	}
	ka := opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions().GetConnectionKeepalive()
	if ka == nil {
		return nil, errors.New("embedded bootstrap template: xds cluster without HTTP/2 keepalive")
	}
	ka.Interval = durationpb.New(c.XDSKeepaliveInterval)
	ka.Timeout = durationpb.New(c.XDSKeepaliveTimeout)
	if xds.TypedExtensionProtocolOptions[httpOptions], err = anypb.New(opts); err != nil {
		return nil, fmt.Errorf("pack %s: %w", httpOptions, err)
	}

	if c.XDSTLS != nil {
		sni := c.XDSTLS.ServerName
		if sni == "" {
			sni = c.XDSAddress
		}
		tlsCtx, err := anypb.New(&tlsv3.UpstreamTlsContext{
			Sni: sni,
			CommonTlsContext: &tlsv3.CommonTlsContext{
				AlpnProtocols: []string{"h2"},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
					ValidationContext: &tlsv3.CertificateValidationContext{
						TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: c.XDSTLS.CAFile}},
						MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
							SanType: tlsv3.SubjectAltNameMatcher_DNS,
							Matcher: exactMatcher(sni),
						}},
					},
				},
			},
		})
		if err != nil {
			return nil, fmt.Errorf("pack xDS TLS context: %w", err)
		}
		xds.TransportSocket = &corev3.TransportSocket{
			Name:       "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: tlsCtx},
		}
	}
	if err := ValidateDeep(b); err != nil {
		return nil, fmt.Errorf("rendered bootstrap invalid: %w", err)
	}
	return b, nil
}

// RenderBootstrap renders the bootstrap YAML of the envoy-config ConfigMap
// (key envoy.yaml). The same config always gives the same bytes.
func RenderBootstrap(c BootstrapConfig) ([]byte, error) {
	b, err := Bootstrap(c)
	if err != nil {
		return nil, err
	}
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encode bootstrap: %w", err)
	}
	// JSONToYAML sorts the keys: the output is stable whatever protojson's
	// spacing.
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return nil, fmt.Errorf("encode bootstrap: %w", err)
	}
	return y, nil
}

// ParseBootstrap reads a bootstrap (YAML or JSON) strictly, as Envoy does:
// an unknown field or a packed type unknown to this build is an error.
func ParseBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parse bootstrap YAML: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, b); err != nil {
		return nil, fmt.Errorf("parse bootstrap: %w", err)
	}
	return b, nil
}

func staticCluster(b *bootstrapv3.Bootstrap, name string) *clusterv3.Cluster {
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == name {
			return c
		}
	}
	return nil
}

// endpointAddress is the one endpoint of a template cluster, nil if it has
// not exactly one.
func endpointAddress(c *clusterv3.Cluster) *corev3.SocketAddress {
	eps := c.GetLoadAssignment().GetEndpoints()
	if len(eps) != 1 || len(eps[0].GetLbEndpoints()) != 1 {
		return nil
	}
	return eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
}

func exactMatcher(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}
