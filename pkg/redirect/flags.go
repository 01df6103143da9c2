package redirect

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
)

// Flag names of iptables-init (DESIGN.md "Command line"). Each is also the
// name of the pod annotation sidecar.io/<name> that sets it, where one exists.
const (
	FlagInboundPort             = "inbound-port"
	FlagOutboundPort            = "outbound-port"
	FlagProxyUID                = "proxy-uid"
	FlagProxyGID                = "proxy-gid"
	FlagIncludeInboundPorts     = "include-inbound-ports"
	FlagExcludeInboundPorts     = "exclude-inbound-ports"
	FlagExcludeOutboundPorts    = "exclude-outbound-ports"
	FlagIncludeOutboundIPRanges = "include-outbound-ip-ranges"
	FlagExcludeOutboundIPRanges = "exclude-outbound-ip-ranges"
	FlagIPv6                    = "ipv6"
	FlagIPTablesMode            = "iptables-mode"
)

// AddFlags registers the spec's flags on fs; parsing fs writes into s, so s
// should hold the defaults (DefaultSpec) first.
func (s *Spec) AddFlags(fs *flag.FlagSet) {
	fs.Var((*portValue)(&s.InboundPort), FlagInboundPort, "port of Envoy's inbound listener")
	fs.Var((*portValue)(&s.OutboundPort), FlagOutboundPort, "port of Envoy's outbound listener")
	fs.Var((*idValue)(&s.ProxyUID), FlagProxyUID, "UID Envoy runs as; its traffic is never redirected")
	fs.Var(&gidValue{&s.ProxyGID}, FlagProxyGID, "GID whose traffic is never redirected (unset: none)")
	fs.Var((*portListValue)(&s.IncludeInboundPorts), FlagIncludeInboundPorts, "inbound ports to capture: * or a list such as 8080,9000-9100 (empty: none)")
	fs.Var((*portListValue)(&s.ExcludeInboundPorts), FlagExcludeInboundPorts, "inbound ports never captured")
	fs.Var((*portListValue)(&s.ExcludeOutboundPorts), FlagExcludeOutboundPorts, "outbound destination ports never captured")
	fs.Var((*cidrListValue)(&s.IncludeOutboundCIDRs), FlagIncludeOutboundIPRanges, "outbound destinations to capture: * or CIDRs such as 10.0.0.0/8,fd00::/8 (empty: none)")
	fs.Var((*cidrListValue)(&s.ExcludeOutboundCIDRs), FlagExcludeOutboundIPRanges, "outbound destination CIDRs never captured")
	fs.Var((*ipv6Value)(&s.IPv6), FlagIPv6, "IPv6 rules: auto (when IPv6 is on in the pod), on or off")
	fs.Var((*modeValue)(&s.Mode), FlagIPTablesMode, "iptables backend: auto, nft or legacy")
}

// ParseArgs reads iptables-init arguments as Spec.Args writes them (any
// flag may be left out: it keeps its DefaultSpec value) and validates the
// result. Only spec flags are accepted.
func ParseArgs(args []string) (Spec, error) {
	s := DefaultSpec()
	fs := flag.NewFlagSet("iptables-init", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	s.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Spec{}, fmt.Errorf("parse iptables-init arguments: -help is not a spec flag")
		}
		return Spec{}, fmt.Errorf("parse iptables-init arguments: %w", err)
	}
	if fs.NArg() > 0 {
		return Spec{}, fmt.Errorf("parse iptables-init arguments: unexpected argument %q: every setting is a --flag=value", truncate(fs.Arg(0)))
	}
	if err := s.Validate(); err != nil {
		return Spec{}, err
	}
	return s, nil
}

type portValue uint16

func (v *portValue) String() string { return strconv.Itoa(int(*v)) }
func (v *portValue) Set(s string) error {
	p, err := parsePort(s)
	if err != nil {
		return err
	}
	*v = portValue(p)
	return nil
}

type idValue uint32

func (v *idValue) String() string { return strconv.FormatUint(uint64(*v), 10) }
func (v *idValue) Set(s string) error {
	n, err := parseID(s)
	if err != nil {
		return err
	}
	*v = idValue(n)
	return nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q: want a number 0-4294967294", truncate(s))
	}
	return uint32(n), nil
}

type gidValue struct{ p **uint32 }

func (v *gidValue) String() string {
	if v.p == nil || *v.p == nil {
		return ""
	}
	return strconv.FormatUint(uint64(**v.p), 10)
}
func (v *gidValue) Set(s string) error {
	n, err := parseID(s)
	if err != nil {
		return err
	}
	*v.p = &n
	return nil
}

type portListValue PortList

func (v *portListValue) String() string { return PortList(*v).String() }
func (v *portListValue) Set(s string) error {
	l, err := ParsePortList(s)
	if err != nil {
		return err
	}
	*v = portListValue(l)
	return nil
}

type cidrListValue CIDRList

func (v *cidrListValue) String() string { return CIDRList(*v).String() }
func (v *cidrListValue) Set(s string) error {
	l, err := ParseCIDRList(s)
	if err != nil {
		return err
	}
	*v = cidrListValue(l)
	return nil
}

type ipv6Value IPv6Mode

func (v *ipv6Value) String() string { return string(*v) }
func (v *ipv6Value) Set(s string) error {
	m, err := ParseIPv6Mode(s)
	if err != nil {
		return err
	}
	*v = ipv6Value(m)
	return nil
}

type modeValue Mode

func (v *modeValue) String() string { return string(*v) }
func (v *modeValue) Set(s string) error {
	m, err := ParseMode(s)
	if err != nil {
		return err
	}
	*v = modeValue(m)
	return nil
}
