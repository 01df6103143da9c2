package redirect

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Family is an IP family: it selects iptables or ip6tables.
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "family(" + strconv.Itoa(int(f)) + ")"
}

// Our chains in the nat table (DESIGN.md "Traffic redirection").
const (
	ChainInbound    = "SIDECAR_INBOUND"     // PREROUTING jumps here: which inbound TCP to capture
	ChainInRedirect = "SIDECAR_IN_REDIRECT" // REDIRECT to Envoy's inbound port
	ChainOutput     = "SIDECAR_OUTPUT"      // OUTPUT jumps here: which outbound TCP to capture
	ChainRedirect   = "SIDECAR_REDIRECT"    // REDIRECT to Envoy's outbound port
)

// Chains lists our chains in the order they are declared.
func Chains() []string {
	return []string{ChainInbound, ChainInRedirect, ChainOutput, ChainRedirect}
}

func isOurChain(name string) bool { return slices.Contains(Chains(), name) }

// Rule is one rule of the nat table: "-A Chain Args...". Args are in
// iptables-restore syntax, one token each.
type Rule struct {
	Chain string
	Args  []string
}

func (r Rule) String() string { return "-A " + r.Chain + " " + strings.Join(r.Args, " ") }

// RuleSet is the redirection of one Spec, for both families. Rules go into
// our chains in order; Jumps are inserted at position 1 of the built-in
// chains (first PREROUTING, then OUTPUT).
type RuleSet struct {
	IPv4  []Rule
	IPv6  []Rule
	Jumps []Rule
}

// Rules returns the rules of our chains for family f.
func (rs RuleSet) Rules(f Family) []Rule {
	if f == IPv6 {
		return rs.IPv6
	}
	return rs.IPv4
}

// Build turns a spec into its rule set. It is pure: same spec, same rules.
// Invalid specs are refused with Validate's error.
func Build(s Spec) (RuleSet, error) {
	if err := s.Validate(); err != nil {
		return RuleSet{}, fmt.Errorf("invalid redirect spec: %w", err)
	}
	rs := RuleSet{
		Jumps: []Rule{
			{Chain: "PREROUTING", Args: []string{"-p", "tcp", "-j", ChainInbound}},
			{Chain: "OUTPUT", Args: []string{"-p", "tcp", "-j", ChainOutput}},
		},
	}
	rs.IPv4 = buildFamily(s, IPv4)
	rs.IPv6 = buildFamily(s, IPv6)
	return rs, nil
}

func buildFamily(s Spec, f Family) []Rule {
	var rules []Rule
	add := func(chain string, args ...string) { rules = append(rules, Rule{Chain: chain, Args: args}) }

	// Inbound: the proxy's own ports and the excluded ports return, then
	// the included ports go to Envoy's inbound listener.
	for _, p := range []uint16{s.InboundPort, s.OutboundPort} {
		add(ChainInbound, "-p", "tcp", "--dport", strconv.Itoa(int(p)), "-j", "RETURN")
	}
	for _, r := range portRuns(s.ExcludeInboundPorts.Ports) {
		add(ChainInbound, "-p", "tcp", "--dport", portMatch(r), "-j", "RETURN")
	}
	if s.IncludeInboundPorts.All {
		add(ChainInbound, "-p", "tcp", "-j", ChainInRedirect)
	} else {
		for _, r := range portRuns(s.IncludeInboundPorts.Ports) {
			add(ChainInbound, "-p", "tcp", "--dport", portMatch(r), "-j", ChainInRedirect)
		}
	}
	add(ChainInRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(int(s.InboundPort)))

	// Outbound, in this order: the proxy's own traffic, loopback, excluded
	// ports, excluded CIDRs return; then the included destinations go to
	// Envoy's outbound listener.
	add(ChainOutput, "-m", "owner", "--uid-owner", strconv.FormatUint(uint64(s.ProxyUID), 10), "-j", "RETURN")
	if s.ProxyGID != nil {
		add(ChainOutput, "-m", "owner", "--gid-owner", strconv.FormatUint(uint64(*s.ProxyGID), 10), "-j", "RETURN")
	}
	add(ChainOutput, "-o", "lo", "-j", "RETURN")
	for _, r := range portRuns(s.ExcludeOutboundPorts.Ports) {
		add(ChainOutput, "-p", "tcp", "--dport", portMatch(r), "-j", "RETURN")
	}
	for _, p := range prefixesOf(s.ExcludeOutboundCIDRs, f) {
		add(ChainOutput, "-d", p.String(), "-j", "RETURN")
	}
	if s.IncludeOutboundCIDRs.All {
		add(ChainOutput, "-j", ChainRedirect)
	} else {
		for _, p := range prefixesOf(s.IncludeOutboundCIDRs, f) {
			add(ChainOutput, "-d", p.String(), "-j", ChainRedirect)
		}
	}
	add(ChainRedirect, "-p", "tcp", "-j", "REDIRECT", "--to-ports", strconv.Itoa(int(s.OutboundPort)))
	return rules
}

// portMatch renders a run of ports as iptables writes it: "80" or "80:90".
func portMatch(r [2]uint16) string {
	if r[0] == r[1] {
		return strconv.Itoa(int(r[0]))
	}
	return strconv.Itoa(int(r[0])) + ":" + strconv.Itoa(int(r[1]))
}

// Render is the iptables-restore --noflush input that installs the rules
// of family f in a nat table holding nothing of ours.
func (rs RuleSet) Render(f Family) []byte { return rs.ApplyScript(f, Table{}) }

// ApplyScript is the iptables-restore --noflush input that installs the
// rules of family f over cur, the nat table as it is now (ParseSave). One
// transaction: our chains are declared (which creates them or empties
// them), every existing jump into them is deleted, their rules are added
// and the jumps inserted at position 1. Running it again on its own result
// leaves the table byte-identical.
func (rs RuleSet) ApplyScript(f Family, cur Table) []byte {
	var b bytes.Buffer
	b.WriteString("*nat\n")
	for _, c := range Chains() {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for _, j := range cur.jumpsIntoOurs() {
		fmt.Fprintf(&b, "-D %s %s\n", j.Chain, strings.Join(j.Args, " "))
	}
	for _, r := range rs.Rules(f) {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	for _, j := range rs.Jumps {
		fmt.Fprintf(&b, "-I %s 1 %s\n", j.Chain, strings.Join(j.Args, " "))
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// CleanupScript is the iptables-restore --noflush input that removes our
// jumps and chains from cur and nothing else; nil when cur holds nothing
// of ours.
func CleanupScript(cur Table) []byte {
	jumps := cur.jumpsIntoOurs()
	var chains []string
	for _, c := range Chains() {
		if slices.Contains(cur.Chains, c) {
			chains = append(chains, c)
		}
	}
	if len(jumps) == 0 && len(chains) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteString("*nat\n")
	for _, c := range chains {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c) // empties it, so it can be deleted
	}
	for _, j := range jumps {
		fmt.Fprintf(&b, "-D %s %s\n", j.Chain, strings.Join(j.Args, " "))
	}
	for _, c := range chains {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}
