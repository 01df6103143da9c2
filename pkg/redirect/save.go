package redirect

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Table is the nat table as iptables-save prints it: its user-defined
// chains and its rules, in order.
type Table struct {
	Exists bool     // iptables-save printed a *nat section
	Chains []string // user-defined chains (built-in ones are left out)
	Rules  []Rule
}

var builtinNATChains = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}

// ParseSave reads the nat table out of iptables-save (or ip6tables-save)
// output; other tables and comment lines are skipped. Output without a nat
// section is an empty Table.
func ParseSave(save []byte) (Table, error) {
	var t Table
	inNAT := false
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			if inNAT {
				return Table{}, fmt.Errorf("iptables-save output line %d: table %q starts before the nat table's COMMIT", n, line)
			}
			inNAT = line == "*nat"
			t.Exists = t.Exists || inNAT
		case !inNAT:
		case line == "COMMIT":
			inNAT = false
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			if name == "" {
				return Table{}, fmt.Errorf("iptables-save output line %d: chain declaration %q has no name", n, truncate(line))
			}
			if !isBuiltinNAT(name) {
				t.Chains = append(t.Chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			tokens, err := splitRuleLine(line)
			if err != nil {
				return Table{}, fmt.Errorf("iptables-save output line %d: %w", n, err)
			}
			if len(tokens) < 2 {
				return Table{}, fmt.Errorf("iptables-save output line %d: rule %q names no chain", n, truncate(line))
			}
			t.Rules = append(t.Rules, Rule{Chain: tokens[1], Args: tokens[2:]})
		default:
			return Table{}, fmt.Errorf("iptables-save output line %d: unexpected %q in the nat table", n, truncate(line))
		}
	}
	if err := sc.Err(); err != nil {
		return Table{}, fmt.Errorf("read iptables-save output: %w", err)
	}
	if inNAT {
		return Table{}, fmt.Errorf("iptables-save output: the nat table has no COMMIT line (truncated output?)")
	}
	return t, nil
}

func isBuiltinNAT(name string) bool { return slices.Contains(builtinNATChains, name) }

// splitRuleLine splits a rule line into tokens at spaces outside double
// quotes (iptables-save quotes comments and escapes quotes inside them with
// a backslash). Tokens keep their quotes, so they can be written back.
func splitRuleLine(line string) ([]string, error) {
	var tokens []string
	var cur strings.Builder
	inQuote, escaped, have := false, false, false
	for _, r := range line {
		switch {
		case escaped:
			escaped = false
		case inQuote && r == '\\':
			escaped = true
		case r == '"':
			inQuote = !inQuote
		case !inQuote && (r == ' ' || r == '\t'):
			if have {
				tokens = append(tokens, cur.String())
				cur.Reset()
				have = false
			}
			continue
		}
		cur.WriteRune(r)
		have = true
	}
	if inQuote {
		return nil, fmt.Errorf("rule %q: unterminated quote", truncate(line))
	}
	if have {
		tokens = append(tokens, cur.String())
	}
	return tokens, nil
}

// target returns the chain a rule jumps or goes to, or "".
func (r Rule) target() string {
	for i := 0; i+1 < len(r.Args); i++ {
		if r.Args[i] == "-j" || r.Args[i] == "-g" || r.Args[i] == "--jump" || r.Args[i] == "--goto" {
			return r.Args[i+1]
		}
	}
	return ""
}

// jumpsIntoOurs returns the rules outside our chains that jump into them.
func (t Table) jumpsIntoOurs() []Rule {
	var out []Rule
	for _, r := range t.Rules {
		if !isOurChain(r.Chain) && isOurChain(r.target()) {
			out = append(out, r)
		}
	}
	return out
}

// HasOurs reports whether the table holds any of our chains or jumps.
func (t Table) HasOurs() bool {
	for _, c := range t.Chains {
		if isOurChain(c) {
			return true
		}
	}
	return len(t.jumpsIntoOurs()) > 0
}

// CountRules counts the rules (of every table) in iptables-save output.
func CountRules(save []byte) int {
	n := 0
	for line := range strings.SplitSeq(string(save), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "-A ") {
			n++
		}
	}
	return n
}

var chainCounters = regexp.MustCompile(`^(:\S+ \S+) \[\d+:\d+\]$`)

// CanonicalSave strips from iptables-save output what changes without the
// rules changing: comment lines (version, date, warnings) and the packet and
// byte counters of chain declarations. Two saves of the same rules are then
// byte-identical.
func CanonicalSave(save []byte) []byte {
	var b bytes.Buffer
	for line := range strings.SplitSeq(string(save), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = chainCounters.ReplaceAllString(line, "$1 [0:0]")
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}
