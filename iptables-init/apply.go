package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// plan is what iptables-init decided before touching anything.
type plan struct {
	mode      redirect.Mode
	modeWhy   string
	families  []redirect.Family
	ipv6Why   string
	scripts   map[redirect.Family][]byte // nil script: nothing to do for that family
	ruleCount int
}

// run installs (or with cfg.Cleanup removes) the redirection in the current
// network namespace, or only prints it with cfg.DryRun.
func run(ctx context.Context, cfg Config, sys system, stdout io.Writer, log *slog.Logger) error {
	start := time.Now()
	rs, err := redirect.Build(cfg.Spec)
	if err != nil {
		return err
	}
	var caps capSet
	if !cfg.DryRun {
		if caps, err = sys.Caps(); err != nil {
			return err
		}
		if !caps.has(capNetAdmin) {
			return errors.New("missing capability NET_ADMIN: the iptables-init container needs securityContext.capabilities.add [NET_ADMIN, NET_RAW] and to run as UID 0")
		}
	}
	p, err := makePlan(ctx, cfg, rs, sys)
	if err != nil {
		if !cfg.DryRun {
			return err
		}
		// A dry run still shows the rules, for a fresh nat table.
		p = dryRunFallback(cfg, rs, err)
	}
	if cfg.DryRun {
		return printPlan(stdout, cfg, p)
	}
	if p.mode == redirect.ModeLegacy && !caps.has(capNetRaw) {
		return errors.New("missing capability NET_RAW, which legacy iptables needs: add it to the iptables-init container's securityContext.capabilities.add, or use --iptables-mode=nft")
	}
	applied := 0
	for _, f := range p.families {
		script := p.scripts[f]
		if script == nil {
			continue
		}
		name := tool(p.mode, f, "restore")
		if _, err := sys.Run(ctx, name, restoreArgs(p.mode), script); err != nil {
			err = ipv6Context(err, f, p.ipv6Why)
			if applied > 0 {
				return fmt.Errorf("%w (the %s rules were already changed; fix the cause and run again: a re-run replaces them)", err, p.families[0])
			}
			return err
		}
		applied++
	}
	action := "redirect applied"
	if cfg.Cleanup {
		action = "redirect removed"
	}
	log.Info(action,
		"backend", string(p.mode), "backend_reason", p.modeWhy,
		"families", familyNames(p.families), "ipv6", p.ipv6Why,
		"rules", p.ruleCount, "transactions", applied,
		"duration", time.Since(start).Round(time.Microsecond).String())
	return nil
}

func restoreArgs(mode redirect.Mode) []string {
	if mode == redirect.ModeLegacy {
		// Legacy iptables serialises on a lock file; wait for it rather
		// than fail if something else in the pod holds it.
		return []string{"--noflush", "--wait=10"}
	}
	return []string{"--noflush"}
}

func familyNames(fs []redirect.Family) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.String()
	}
	return strings.Join(names, ",")
}

// makePlan picks the families and the backend, reads the nat tables as
// they are and renders one transaction per family. It changes nothing
// (except that the nft probe may create an empty nat table).
func makePlan(ctx context.Context, cfg Config, rs redirect.RuleSet, sys system) (plan, error) {
	var p plan
	var err error
	if p.families, p.ipv6Why, err = families(cfg.Spec.IPv6, sys); err != nil {
		return p, err
	}
	saves := map[redirect.Mode]map[redirect.Family][]byte{}
	switch cfg.Spec.Mode {
	case redirect.ModeAuto:
		if p.mode, p.modeWhy, err = detect(ctx, sys, saves); err != nil {
			return p, err
		}
	default:
		p.mode, p.modeWhy = cfg.Spec.Mode, "set by --iptables-mode"
	}

	// Every binary first, so that a missing one changes nothing.
	for _, f := range p.families {
		for _, kind := range []string{"restore", "save"} {
			name := tool(p.mode, f, kind)
			if err := sys.LookPath(name); err != nil {
				return p, missingTool(name, f, p.ipv6Why)
			}
		}
	}
	p.scripts = map[redirect.Family][]byte{}
	for _, f := range p.families {
		save, ok := saves[p.mode][f]
		if !ok {
			if save, err = sys.Run(ctx, tool(p.mode, f, "save"), nil, nil); err != nil {
				return p, ipv6Context(err, f, p.ipv6Why)
			}
		}
		cur, err := redirect.ParseSave(save)
		if err != nil {
			return p, fmt.Errorf("read the %s nat table from %s: %w", f, tool(p.mode, f, "save"), err)
		}
		if cfg.Cleanup {
			p.scripts[f] = redirect.CleanupScript(cur)
		} else {
			p.scripts[f] = rs.ApplyScript(f, cur)
			p.ruleCount += len(rs.Rules(f)) + len(rs.Jumps)
		}
	}
	return p, nil
}

// families decides which IP families get rules (DESIGN.md: IPv6 `auto`
// applies them when IPv6 is on in the pod and fails when it cannot).
func families(mode redirect.IPv6Mode, sys system) ([]redirect.Family, string, error) {
	v4 := []redirect.Family{redirect.IPv4}
	both := []redirect.Family{redirect.IPv4, redirect.IPv6}
	switch mode {
	case redirect.IPv6Off:
		return v4, "off (--ipv6=off)", nil
	case redirect.IPv6On:
		return both, "on (--ipv6=on)", nil
	}
	st, err := sys.IPv6()
	if err != nil {
		return nil, "", err
	}
	switch st {
	case ipv6Absent:
		return v4, "off (auto: the kernel has no IPv6)", nil
	case ipv6Disabled:
		return v4, "off (auto: IPv6 is disabled in this network namespace)", nil
	}
	return both, "on (auto: IPv6 is enabled in this network namespace)", nil
}

// detect is --iptables-mode=auto: count the rules each backend holds, and
// probe nft's nat table only when neither holds any more than the other.
func detect(ctx context.Context, sys system, saves map[redirect.Mode]map[redirect.Family][]byte) (redirect.Mode, string, error) {
	var state [2]redirect.Backend
	for i, mode := range []redirect.Mode{redirect.ModeNFT, redirect.ModeLegacy} {
		if sys.LookPath(tool(mode, redirect.IPv4, "restore")) != nil {
			continue
		}
		state[i].Installed = true
		saves[mode] = map[redirect.Family][]byte{}
		for _, f := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
			name := tool(mode, f, "save")
			if sys.LookPath(name) != nil {
				continue
			}
			// Without -t: rules of every table count, not only nat.
			out, err := sys.Run(ctx, name, nil, nil)
			if err != nil {
				var te *toolError
				if errors.As(err, &te) && strings.Contains(diagnose(name, te.Output), "permission denied") {
					return "", "", err
				}
				// A backend the kernel cannot serve holds no rules; the
				// probe (or the restore) reports it if it is chosen.
				continue
			}
			saves[mode][f] = out
			state[i].Rules += redirect.CountRules(out)
		}
	}
	nft, legacy := state[0], state[1]
	if nft.Installed && nft.Rules == legacy.Rules {
		_, err := sys.Run(ctx, tool(redirect.ModeNFT, redirect.IPv4, ""), []string{"-t", "nat", "-S"}, nil)
		nft.NATWorks = err == nil
	}
	return redirect.ChooseBackend(nft, legacy)
}

// missingTool explains a binary that is not installed.
func missingTool(name string, f redirect.Family, ipv6Why string) error {
	msg := fmt.Sprintf("%s is not installed (not in PATH): the image needs the iptables package (Debian: apt-get install iptables)", name)
	if f == redirect.IPv6 {
		msg += fmt.Sprintf("; IPv6 is %s, so its rules are required: install ip6tables or set --ipv6=off (annotation sidecar.io/ipv6: off) to leave IPv6 traffic unredirected", ipv6Why)
	}
	return errors.New(msg)
}

// ipv6Context adds to an IPv6 failure why IPv6 rules were attempted.
func ipv6Context(err error, f redirect.Family, ipv6Why string) error {
	if f != redirect.IPv6 {
		return err
	}
	return fmt.Errorf("%w; IPv6 is %s and its rules cannot be applied: fix the cause or set --ipv6=off (annotation sidecar.io/ipv6: off)", err, ipv6Why)
}

func dryRunFallback(cfg Config, rs redirect.RuleSet, cause error) plan {
	p := plan{mode: cfg.Spec.Mode, modeWhy: "unknown: " + oneLine(cause), scripts: map[redirect.Family][]byte{}}
	p.families = []redirect.Family{redirect.IPv4}
	p.ipv6Why = "not checked"
	if cfg.Spec.IPv6 != redirect.IPv6Off {
		p.families = append(p.families, redirect.IPv6)
	}
	for _, f := range p.families {
		if cfg.Cleanup {
			p.scripts[f] = redirect.CleanupScript(redirect.Table{Chains: redirect.Chains()})
		} else {
			p.scripts[f] = rs.Render(f)
		}
	}
	return p
}

func printPlan(w io.Writer, cfg Config, p plan) error {
	var b strings.Builder
	what := "install"
	if cfg.Cleanup {
		what = "cleanup"
	}
	fmt.Fprintf(&b, "# iptables-init --dry-run (%s): nothing was changed\n", what)
	fmt.Fprintf(&b, "# backend: %s (%s)\n", p.mode, p.modeWhy)
	fmt.Fprintf(&b, "# ipv6: %s\n", p.ipv6Why)
	for _, f := range p.families {
		name := tool(p.mode, f, "restore")
		if p.mode == redirect.ModeAuto {
			name = strings.Replace(name, "-auto", "", 1)
		}
		script := p.scripts[f]
		if script == nil {
			fmt.Fprintf(&b, "# %s: nothing of ours to remove\n", f)
			continue
		}
		fmt.Fprintf(&b, "# %s: %s %s\n", f, name, strings.Join(restoreArgs(p.mode), " "))
		b.Write(script)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// oneLine flattens an error (errors.Join uses newlines) for a log line.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
