// Package redirect builds the iptables rule set that sends a pod's TCP
// traffic through its Envoy sidecar. The rules are data: Build(Spec) returns
// them and they render as iptables-restore input. The same Spec type is what
// the injection engine turns into the iptables-init container's arguments, so
// the engine and the init program can never disagree about a flag.
package redirect

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Defaults of DESIGN.md "Public names".
const (
	DefaultInboundPort  = 10001
	DefaultOutboundPort = 10002
	DefaultProxyUID     = 1337
)

// IPv6Mode says whether the rules are also applied with ip6tables.
type IPv6Mode string

const (
	IPv6Auto IPv6Mode = "auto" // apply when IPv6 is on in the pod; fail when it is on and cannot be handled
	IPv6On   IPv6Mode = "on"   // always apply; fail when impossible
	IPv6Off  IPv6Mode = "off"  // never touch ip6tables
)

// ParseIPv6Mode parses "auto", "on" or "off".
func ParseIPv6Mode(s string) (IPv6Mode, error) {
	switch m := IPv6Mode(s); m {
	case IPv6Auto, IPv6On, IPv6Off:
		return m, nil
	}
	return "", fmt.Errorf("%q: want auto, on or off", s)
}

// Mode selects the iptables backend.
type Mode string

const (
	ModeAuto   Mode = "auto"
	ModeNFT    Mode = "nft"
	ModeLegacy Mode = "legacy"
)

// ParseMode parses "auto", "nft" or "legacy".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeNFT, ModeLegacy:
		return m, nil
	}
	return "", fmt.Errorf("%q: want auto, nft or legacy", s)
}

// PortList is either every port ("*") or an explicit, sorted, duplicate-free
// list. The zero value is the empty list.
type PortList struct {
	All   bool
	Ports []uint16
}

// AllPorts is "*".
func AllPorts() PortList { return PortList{All: true} }

// Contains reports whether p is in the list.
func (l PortList) Contains(p uint16) bool {
	if l.All {
		return true
	}
	_, found := slices.BinarySearch(l.Ports, p)
	return found
}

// IsEmpty reports whether the list selects no port.
func (l PortList) IsEmpty() bool { return !l.All && len(l.Ports) == 0 }

// String renders the list in the form ParsePortList reads; runs of three or
// more consecutive ports are written as a range ("8000-8100"), so that any
// list ParsePortList accepts renders back into one it accepts.
func (l PortList) String() string {
	if l.All {
		return "*"
	}
	var parts []string
	for _, r := range portRuns(l.Ports) {
		switch {
		case r[0] == r[1]:
			parts = append(parts, strconv.Itoa(int(r[0])))
		case r[1] == r[0]+1:
			parts = append(parts, strconv.Itoa(int(r[0])), strconv.Itoa(int(r[1])))
		default:
			parts = append(parts, strconv.Itoa(int(r[0]))+"-"+strconv.Itoa(int(r[1])))
		}
	}
	return strings.Join(parts, ",")
}

// portRuns groups sorted ports into runs of consecutive ports, as
// [first, last] pairs.
func portRuns(ports []uint16) [][2]uint16 {
	var runs [][2]uint16
	for _, p := range ports {
		if n := len(runs); n > 0 && runs[n-1][1] != 65535 && runs[n-1][1]+1 == p {
			runs[n-1][1] = p
			continue
		}
		runs = append(runs, [2]uint16{p, p})
	}
	return runs
}

// maxListItems bounds how many entries a port or CIDR list may hold, so that
// an annotation cannot make the rule set (or the work to build it) huge.
const maxListItems = 256

// ParsePortList parses "*", "" (no port) or a comma-separated list of ports
// 1-65535 and ranges "a-b". Spaces around items are allowed. The result is
// sorted and free of duplicates.
func ParsePortList(s string) (PortList, error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return AllPorts(), nil
	}
	if s == "" {
		return PortList{}, nil
	}
	var ports []uint16
	items := 0
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if items++; items > maxListItems {
			return PortList{}, fmt.Errorf("port list: more than %d entries; use ranges such as 8000-8100", maxListItems)
		}
		lo, hi, isRange := strings.Cut(item, "-")
		a, err := parsePort(lo)
		if err != nil {
			return PortList{}, err
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return PortList{}, err
			}
			if b < a {
				return PortList{}, fmt.Errorf("port range %q: start is above end", item)
			}
		}
		if len(ports)+int(b-a)+1 > 65535 {
			return PortList{}, fmt.Errorf("port list %q: too many ports", s)
		}
		for p := int(a); p <= int(b); p++ {
			ports = append(ports, uint16(p))
		}
		if len(ports) > 65535 {
			return PortList{}, fmt.Errorf("port list %q: too many ports", s)
		}
	}
	slices.Sort(ports)
	return PortList{Ports: slices.Compact(ports)}, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q: want a number 1-65535", truncate(s))
	}
	return uint16(n), nil
}

// ParsePort parses one port 1-65535.
func ParsePort(s string) (uint16, error) { return parsePort(s) }

// CIDRList is either every address ("*") or an explicit list of prefixes,
// masked and sorted, duplicates removed. The zero value is the empty list.
type CIDRList struct {
	All      bool
	Prefixes []netip.Prefix
}

// AllCIDRs is "*".
func AllCIDRs() CIDRList { return CIDRList{All: true} }

// IsEmpty reports whether the list selects no address.
func (l CIDRList) IsEmpty() bool { return !l.All && len(l.Prefixes) == 0 }

// String renders the list in the form ParseCIDRList reads.
func (l CIDRList) String() string {
	if l.All {
		return "*"
	}
	parts := make([]string, len(l.Prefixes))
	for i, p := range l.Prefixes {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// ParseCIDRList parses "*", "" (none) or a comma-separated list of IPv4 and
// IPv6 CIDRs; a bare address is taken as a /32 or /128. Host bits are masked.
func ParseCIDRList(s string) (CIDRList, error) {
	s = strings.TrimSpace(s)
	if s == "*" {
		return AllCIDRs(), nil
	}
	if s == "" {
		return CIDRList{}, nil
	}
	var out []netip.Prefix
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if len(out) >= maxListItems {
			return CIDRList{}, fmt.Errorf("CIDR list: more than %d entries", maxListItems)
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return CIDRList{}, fmt.Errorf("CIDR %q: want an address/length such as 10.0.0.0/8 or fd00::/8", truncate(item))
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil || a.Zone() != "" {
				return CIDRList{}, fmt.Errorf("CIDR %q: want an address/length such as 10.0.0.0/8 or fd00::/8", truncate(item))
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() && p.Bits() < 96 {
			return CIDRList{}, fmt.Errorf("CIDR %q: an IPv4-mapped IPv6 prefix must be /96 or longer; write the IPv4 CIDR instead", truncate(item))
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapShift(p)).Masked()
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return CIDRList{Prefixes: slices.Compact(out)}, nil
}

// unmapShift is how many prefix bits an IPv4-mapped IPv6 prefix (at least
// /96, ParseCIDRList checks) loses when it is written as plain IPv4.
func unmapShift(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

func truncate(s string) string {
	const limit = 64
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

// Spec is everything the redirect rules depend on.
type Spec struct {
	InboundPort  uint16 // Envoy's inbound listener
	OutboundPort uint16 // Envoy's outbound listener
	ProxyUID     uint32 // Envoy's UID: its traffic is never redirected
	ProxyGID     *uint32

	IncludeInboundPorts  PortList // "*" by default
	ExcludeInboundPorts  PortList // never captured (also: tcpSocket-probe-only ports)
	ExcludeOutboundPorts PortList
	IncludeOutboundCIDRs CIDRList // "*" by default
	ExcludeOutboundCIDRs CIDRList

	IPv6 IPv6Mode
	Mode Mode
}

// DefaultSpec is the spec of a pod without settings.
func DefaultSpec() Spec {
	return Spec{
		InboundPort:          DefaultInboundPort,
		OutboundPort:         DefaultOutboundPort,
		ProxyUID:             DefaultProxyUID,
		IncludeInboundPorts:  AllPorts(),
		IncludeOutboundCIDRs: AllCIDRs(),
		IPv6:                 IPv6Auto,
		Mode:                 ModeAuto,
	}
}

// Args renders the spec as iptables-init command-line flags, in a fixed
// order; flags at their default value are still written, so a container's
// args say everything without knowing the defaults. ParseArgs reads them back.
func (s Spec) Args() []string {
	args := []string{
		"--inbound-port=" + strconv.Itoa(int(s.InboundPort)),
		"--outbound-port=" + strconv.Itoa(int(s.OutboundPort)),
		"--proxy-uid=" + strconv.FormatUint(uint64(s.ProxyUID), 10),
	}
	if s.ProxyGID != nil {
		args = append(args, "--proxy-gid="+strconv.FormatUint(uint64(*s.ProxyGID), 10))
	}
	args = append(args,
		"--include-inbound-ports="+s.IncludeInboundPorts.String(),
		"--exclude-inbound-ports="+s.ExcludeInboundPorts.String(),
		"--exclude-outbound-ports="+s.ExcludeOutboundPorts.String(),
		"--include-outbound-ip-ranges="+s.IncludeOutboundCIDRs.String(),
		"--exclude-outbound-ip-ranges="+s.ExcludeOutboundCIDRs.String(),
		"--ipv6="+string(s.IPv6),
		"--iptables-mode="+string(s.Mode),
	)
	return args
}
