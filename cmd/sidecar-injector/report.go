package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// report collects what inject decided for each workload: one summary line
// per workload, and the warnings, each printed once however many workloads
// share it, the ones that change behaviour first.
type report struct {
	summaries []string
	warnings  map[string][]string // warning -> workloads
	order     []string            // warnings in first-seen order
}

func newReport() *report { return &report{warnings: map[string][]string{}} }

func (r *report) add(w inject.Workload, res inject.Result) {
	r.summaries = append(r.summaries, summaryLine(w, res))
	for _, warning := range res.Warnings {
		if _, seen := r.warnings[warning]; !seen {
			r.order = append(r.order, warning)
		}
		r.warnings[warning] = append(r.warnings[warning], w.Ref())
	}
}

// summaryLine is the one line per workload: deployment/shop injected,
// job/x skipped: host_network.
func summaryLine(w inject.Workload, res inject.Result) string {
	ref := w.Ref()
	switch {
	case res.Audit && res.Decision == inject.DecisionInject:
		return ref + " not changed: audit namespace (would be injected)"
	case res.Audit && res.Decision == inject.DecisionDeny:
		return fmt.Sprintf("%s not changed: audit namespace (would be refused: %s)", ref, res.Reason)
	case res.Decision == inject.DecisionInject:
		s := ref + " injected"
		if st := res.Status; st != nil {
			s += fmt.Sprintf(" (inbound %d, outbound %d, stats %d, admin %d)", st.Ports.Inbound, st.Ports.Outbound, st.Ports.Stats, st.Ports.Admin)
		}
		return s
	case res.Decision == inject.DecisionSkip && res.Reason == inject.ReasonAlreadyInjected:
		return ref + " unchanged: already injected"
	case res.Decision == inject.DecisionSkip:
		return fmt.Sprintf("%s skipped: %s", ref, res.Reason)
	}
	return fmt.Sprintf("%s refused: %s", ref, res.Reason)
}

// changesBehaviour says whether a warning is about something that will
// behave differently from what the manifest says (a moved port, a clash, a
// refusal), rather than a notice.
func changesBehaviour(warning string) bool {
	for _, s := range []string{"moved", "clash", "refuse", "rejected", "denied", "already used", "cannot"} {
		if strings.Contains(warning, s) {
			return true
		}
	}
	return false
}

// maxNamed is how many workloads a shared warning names.
const maxNamed = 3

func (r *report) write(w io.Writer) {
	for _, s := range r.summaries {
		fmt.Fprintln(w, s)
	}
	ordered := slices.Clone(r.order)
	slices.SortStableFunc(ordered, func(a, b string) int {
		ca, cb := changesBehaviour(a), changesBehaviour(b)
		switch {
		case ca && !cb:
			return -1
		case cb && !ca:
			return 1
		}
		return 0
	})
	for _, warning := range ordered {
		refs := slices.Compact(slices.Clone(r.warnings[warning]))
		who := strings.Join(refs[:min(len(refs), maxNamed)], ", ")
		if len(refs) > maxNamed {
			who += fmt.Sprintf(" and %d more", len(refs)-maxNamed)
		}
		fmt.Fprintf(w, "warning: %s: %s\n", who, warning)
	}
}
