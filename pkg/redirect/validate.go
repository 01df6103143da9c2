package redirect

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// FieldError is one problem of a Spec. Field is the iptables-init flag name
// (kebab-case, without dashes), which is also the suffix of the pod
// annotation sidecar.io/<field>, so callers can name what the user wrote.
type FieldError struct {
	Field   string // e.g. "include-inbound-ports"
	Value   string // the field's value as the flag would spell it
	Problem string // what is wrong and how to fix it
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("--%s=%q: %s", e.Field, truncate(e.Value), e.Problem)
}

// Validate reports every problem of the spec, each as a *FieldError (joined
// with errors.Join; errors.As finds the first). A spec that validates
// renders into rules iptables-restore accepts.
func (s Spec) Validate() error {
	var errs []error
	bad := func(field, value, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Value: value, Problem: fmt.Sprintf(format, args...)})
	}
	port := func(p uint16) string { return strconv.Itoa(int(p)) }

	if s.InboundPort == 0 {
		bad(FlagInboundPort, "0", "want a port 1-65535")
	}
	if s.OutboundPort == 0 {
		bad(FlagOutboundPort, "0", "want a port 1-65535")
	}
	if s.InboundPort != 0 && s.InboundPort == s.OutboundPort {
		bad(FlagOutboundPort, port(s.OutboundPort),
			"is also the inbound port (--%s); Envoy's inbound and outbound listeners need different ports", FlagInboundPort)
	}
	if s.ProxyUID == 0 {
		bad(FlagProxyUID, "0", "UID 0 would exempt every root process from redirection; want the UID Envoy runs as (default %d)", DefaultProxyUID)
	} else if s.ProxyUID == 1<<32-1 {
		bad(FlagProxyUID, strconv.FormatUint(uint64(s.ProxyUID), 10), "is not a usable UID; want 1-4294967294")
	}
	if s.ProxyGID != nil {
		v := strconv.FormatUint(uint64(*s.ProxyGID), 10)
		switch *s.ProxyGID {
		case 0:
			bad(FlagProxyGID, v, "GID 0 would exempt every process of group root from redirection; want Envoy's own GID, or leave the flag out")
		case 1<<32 - 1:
			bad(FlagProxyGID, v, "is not a usable GID; want 1-4294967294")
		}
	}

	for _, pl := range []struct {
		field string
		list  PortList
	}{
		{FlagIncludeInboundPorts, s.IncludeInboundPorts},
		{FlagExcludeInboundPorts, s.ExcludeInboundPorts},
		{FlagExcludeOutboundPorts, s.ExcludeOutboundPorts},
	} {
		if err := checkPortList(pl.list); err != "" {
			bad(pl.field, pl.list.String(), "%s", err)
		}
	}
	for _, cl := range []struct {
		field string
		list  CIDRList
	}{
		{FlagIncludeOutboundIPRanges, s.IncludeOutboundCIDRs},
		{FlagExcludeOutboundIPRanges, s.ExcludeOutboundCIDRs},
	} {
		if err := checkCIDRList(cl.list); err != "" {
			bad(cl.field, cl.list.String(), "%s", err)
		}
	}

	// Exclusions carve out of inclusions; "*" as an exclusion would capture
	// nothing at all, which the include settings say more plainly.
	if s.ExcludeInboundPorts.All {
		bad(FlagExcludeInboundPorts, "*", "would exclude every port; to capture no inbound traffic set --%s to an empty value instead", FlagIncludeInboundPorts)
	}
	if s.ExcludeOutboundPorts.All {
		bad(FlagExcludeOutboundPorts, "*", "would exclude every port; to capture no outbound traffic set --%s to an empty value instead", FlagIncludeOutboundIPRanges)
	}
	if s.ExcludeOutboundCIDRs.All {
		bad(FlagExcludeOutboundIPRanges, "*", "would exclude every address; to capture no outbound traffic set --%s to an empty value instead", FlagIncludeOutboundIPRanges)
	}

	// The proxy's own ports are never captured inbound: listing them is a
	// mistake either way (included, it would loop; excluded, it says the
	// user believes an app listens there).
	for _, pp := range []struct {
		flag string
		port uint16
	}{{FlagInboundPort, s.InboundPort}, {FlagOutboundPort, s.OutboundPort}} {
		if pp.port == 0 {
			continue
		}
		if !s.IncludeInboundPorts.All && s.IncludeInboundPorts.Contains(pp.port) {
			bad(FlagIncludeInboundPorts, s.IncludeInboundPorts.String(),
				"lists %d, the proxy's own port (--%s); capturing it would loop traffic into Envoy: remove it", pp.port, pp.flag)
		}
		if !s.ExcludeInboundPorts.All && s.ExcludeInboundPorts.Contains(pp.port) {
			bad(FlagExcludeInboundPorts, s.ExcludeInboundPorts.String(),
				"lists %d, the proxy's own port (--%s), which is never captured anyway; remove it", pp.port, pp.flag)
		}
	}
	if !s.IncludeInboundPorts.All && !s.ExcludeInboundPorts.All {
		for _, p := range s.IncludeInboundPorts.Ports {
			if s.ExcludeInboundPorts.Contains(p) {
				bad(FlagExcludeInboundPorts, s.ExcludeInboundPorts.String(),
					"port %d is also in --%s; a port is either captured or excluded: remove it from one of them", p, FlagIncludeInboundPorts)
				break
			}
		}
	}
	if !s.IncludeOutboundCIDRs.All && !s.ExcludeOutboundCIDRs.All {
	outer:
		for _, in := range s.IncludeOutboundCIDRs.Prefixes {
			for _, ex := range s.ExcludeOutboundCIDRs.Prefixes {
				if ex.Bits() <= in.Bits() && ex.Contains(in.Addr()) {
					what := "is also excluded"
					if ex != in {
						what = "lies inside the excluded " + ex.String()
					}
					bad(FlagIncludeOutboundIPRanges, s.IncludeOutboundCIDRs.String(),
						"%s %s (--%s), so it would never be captured; remove one of them (an excluded range inside an included one is fine)",
						in, what, FlagExcludeOutboundIPRanges)
					break outer
				}
			}
		}
	}

	if _, err := ParseIPv6Mode(string(s.IPv6)); err != nil {
		bad(FlagIPv6, string(s.IPv6), "want auto, on or off")
	}
	if _, err := ParseMode(string(s.Mode)); err != nil {
		bad(FlagIPTablesMode, string(s.Mode), "want auto, nft or legacy")
	}
	return errors.Join(errs...)
}

// checkPortList reports why a list built by hand (not by ParsePortList) is
// not one ParsePortList could have returned, or "".
func checkPortList(l PortList) string {
	switch {
	case l.All && len(l.Ports) > 0:
		return "is both * and a list of ports; use one of them"
	case slices.Contains(l.Ports, 0):
		return "port 0 is not a port; want ports 1-65535"
	case !slices.IsSorted(l.Ports) || len(slices.Compact(slices.Clone(l.Ports))) != len(l.Ports):
		return "ports are not sorted and unique; build the list with ParsePortList"
	case len(portRuns(l.Ports)) > maxListItems:
		return fmt.Sprintf("more than %d separate ports or ranges; merge them into ranges such as 8000-8100", maxListItems)
	}
	return ""
}

// checkCIDRList is checkPortList for CIDR lists.
func checkCIDRList(l CIDRList) string {
	if l.All && len(l.Prefixes) > 0 {
		return "is both * and a list of CIDRs; use one of them"
	}
	if len(l.Prefixes) > maxListItems {
		return fmt.Sprintf("more than %d entries", maxListItems)
	}
	for _, p := range l.Prefixes {
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() || p != p.Masked() {
			return fmt.Sprintf("%s is not a masked IPv4 or IPv6 CIDR such as 10.0.0.0/8; build the list with ParseCIDRList", p)
		}
	}
	if !slices.IsSortedFunc(l.Prefixes, comparePrefix) ||
		len(slices.Compact(slices.Clone(l.Prefixes))) != len(l.Prefixes) {
		return "CIDRs are not sorted and unique; build the list with ParseCIDRList"
	}
	return ""
}

// prefixesOf returns the prefixes of one family.
func prefixesOf(l CIDRList, f Family) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range l.Prefixes {
		if p.Addr().Is4() == (f == IPv4) {
			out = append(out, p)
		}
	}
	return out
}
