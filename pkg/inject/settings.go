package inject

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// Setting annotation names, without the sidecar.io/ prefix. Each maps one to
// one onto an iptables-init flag or a container field.
const (
	SettingIncludeInboundPorts     = "include-inbound-ports"
	SettingExcludeInboundPorts     = "exclude-inbound-ports"
	SettingExcludeOutboundPorts    = "exclude-outbound-ports"
	SettingExcludeOutboundIPRanges = "exclude-outbound-ip-ranges"
	SettingIncludeOutboundIPRanges = "include-outbound-ip-ranges"
	SettingInboundPort             = "inbound-port"
	SettingOutboundPort            = "outbound-port"
	SettingIPv6                    = "ipv6"
	SettingNativeSidecar           = "native-sidecar"
	SettingProxyCPU                = "proxy-cpu"
	SettingProxyMemory             = "proxy-memory"
	SettingProxyImage              = "proxy-image"
	SettingLogLevel                = "log-level"
)

// SettingNames lists every setting, in a fixed order.
func SettingNames() []string {
	return []string{
		SettingIncludeInboundPorts, SettingExcludeInboundPorts, SettingExcludeOutboundPorts,
		SettingExcludeOutboundIPRanges, SettingIncludeOutboundIPRanges, SettingInboundPort,
		SettingOutboundPort, SettingIPv6, SettingNativeSidecar, SettingProxyCPU,
		SettingProxyMemory, SettingProxyImage, SettingLogLevel,
	}
}

// DefaultAllowedSettings is every setting but proxy-image: the webhook puts a
// NET_ADMIN init container next to the proxy, so its image is the admin's.
func DefaultAllowedSettings() []string {
	return slices.DeleteFunc(SettingNames(), func(s string) bool { return s == SettingProxyImage })
}

// maxSettingLen bounds a setting value; longer ones are refused before parsing.
const maxSettingLen = 4096

// settings are the parsed sidecar.io/<setting> annotations of a pod; a nil
// pointer or empty string means "not set".
type settings struct {
	includeInboundPorts  *redirect.PortList
	excludeInboundPorts  *redirect.PortList
	excludeOutboundPorts *redirect.PortList
	excludeOutboundCIDRs *redirect.CIDRList
	includeOutboundCIDRs *redirect.CIDRList
	inboundPort          uint16
	outboundPort         uint16
	ipv6                 redirect.IPv6Mode
	native               NativeSidecarMode
	cpu                  *resource.Quantity
	memory               *resource.Quantity
	image                string
	logLevel             string
}

// has reports whether the pod set the setting of that name.
func (s settings) has(name string) bool {
	switch name {
	case SettingIncludeInboundPorts:
		return s.includeInboundPorts != nil
	case SettingExcludeInboundPorts:
		return s.excludeInboundPorts != nil
	case SettingExcludeOutboundPorts:
		return s.excludeOutboundPorts != nil
	case SettingExcludeOutboundIPRanges:
		return s.excludeOutboundCIDRs != nil
	case SettingIncludeOutboundIPRanges:
		return s.includeOutboundCIDRs != nil
	case SettingInboundPort:
		return s.inboundPort != 0
	case SettingOutboundPort:
		return s.outboundPort != 0
	case SettingIPv6:
		return s.ipv6 != ""
	}
	return false
}

// parseSettings reads every sidecar.io/<setting> annotation strictly: an
// unknown setting, a forbidden one or a malformed value is a deny naming the
// annotation. Annotations are read in sorted order, so the first error
// reported is always the same one.
func parseSettings(annotations map[string]string, allowed []string) (settings, *Error) {
	var s settings
	keys := make([]string, 0, len(annotations))
	for k := range annotations {
		if strings.HasPrefix(k, SettingPrefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, key := range keys {
		name := strings.TrimPrefix(key, SettingPrefix)
		if name == "inject" || name == "status" {
			continue
		}
		value := annotations[key]
		field := "annotation " + key
		if !slices.Contains(SettingNames(), name) {
			return s, denyf(ReasonInvalidSetting, field, "unknown setting; known sidecar.io/ settings: %s", strings.Join(SettingNames(), ", "))
		}
		if !slices.Contains(allowed, name) {
			return s, denyf(ReasonForbiddenSetting, field, "not allowed by the injector config (injection.allowedSettings); remove the annotation or ask the cluster admin")
		}
		if len(value) > maxSettingLen {
			return s, denyf(ReasonInvalidSetting, field, "value is %d bytes; at most %d allowed", len(value), maxSettingLen)
		}
		if !utf8.ValidString(value) {
			return s, denyf(ReasonInvalidSetting, field, "value is not valid UTF-8")
		}
		if err := s.set(name, value); err != nil {
			return s, denyf(ReasonInvalidSetting, field, "%s", err)
		}
	}
	return s, nil
}

func (s *settings) set(name, value string) error {
	var err error
	portList := func() *redirect.PortList {
		var l redirect.PortList
		l, err = redirect.ParsePortList(value)
		return &l
	}
	cidrList := func() *redirect.CIDRList {
		var l redirect.CIDRList
		l, err = redirect.ParseCIDRList(value)
		return &l
	}
	switch name {
	case SettingIncludeInboundPorts:
		s.includeInboundPorts = portList()
	case SettingExcludeInboundPorts:
		s.excludeInboundPorts = portList()
	case SettingExcludeOutboundPorts:
		s.excludeOutboundPorts = portList()
	case SettingExcludeOutboundIPRanges:
		s.excludeOutboundCIDRs = cidrList()
	case SettingIncludeOutboundIPRanges:
		s.includeOutboundCIDRs = cidrList()
	case SettingInboundPort:
		s.inboundPort, err = redirect.ParsePort(value)
	case SettingOutboundPort:
		s.outboundPort, err = redirect.ParsePort(value)
	case SettingIPv6:
		s.ipv6, err = redirect.ParseIPv6Mode(value)
	case SettingNativeSidecar:
		switch m := NativeSidecarMode(value); m {
		case NativeAuto, NativeTrue, NativeFalse:
			s.native = m
		default:
			err = fmt.Errorf("%q: want true, false or auto", value)
		}
	case SettingProxyCPU:
		s.cpu, err = parseQuantity(value, "a CPU quantity such as 100m or 1")
	case SettingProxyMemory:
		s.memory, err = parseQuantity(value, "a memory quantity such as 128Mi")
	case SettingProxyImage:
		if value == "" || strings.ContainsAny(value, " \t\r\n") {
			err = fmt.Errorf("%q: want an image reference such as envoyproxy/envoy:v1.40.0", value)
		}
		s.image = value
	case SettingLogLevel:
		if !slices.Contains(logLevels, value) {
			err = fmt.Errorf("%q: want one of %s", value, strings.Join(logLevels, ", "))
		}
		s.logLevel = value
	}
	return err
}

func parseQuantity(value, want string) (*resource.Quantity, error) {
	q, err := resource.ParseQuantity(value)
	if err != nil || q.Sign() <= 0 {
		return nil, fmt.Errorf("%q: want %s", value, want)
	}
	return &q, nil
}
