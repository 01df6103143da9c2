// Command chartdoc writes the chart's README.md from its values.yaml: every
// key documented with a "# -- " comment becomes a row of the values table,
// with its default taken from the parsed file.
//
// Usage: go run ./hack/chartdoc charts/sidecar-injector
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

var keyLine = regexp.MustCompile(`^(\s*)([A-Za-z0-9_]+):`)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chartdoc CHART_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "chartdoc:", err)
		os.Exit(1)
	}
}

type row struct{ key, def, desc string }

func run(dir string) error {
	values, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	var tree map[string]any
	if err := yaml.Unmarshal(values, &tree); err != nil {
		return fmt.Errorf("values.yaml: %w", err)
	}
	chart, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return err
	}
	var meta struct{ Name, Description, Version, AppVersion, KubeVersion string }
	if err := yaml.Unmarshal(chart, &meta); err != nil {
		return fmt.Errorf("parse Chart.yaml: %w", err)
	}

	var rows []row
	var path []string    // keys by indentation level
	var indents []int    // indentation of each path element
	var pending []string // "# --" comment lines waiting for their key
	sc := bufio.NewScanner(bytes.NewReader(values))
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "# -- "):
			pending = []string{strings.TrimPrefix(trimmed, "# -- ")}
			continue
		case strings.HasPrefix(trimmed, "#") && len(pending) > 0:
			pending = append(pending, strings.TrimSpace(strings.TrimPrefix(trimmed, "#")))
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		indent := len(m[1])
		for len(indents) > 0 && indents[len(indents)-1] >= indent {
			indents, path = indents[:len(indents)-1], path[:len(path)-1]
		}
		indents, path = append(indents, indent), append(path, m[2])
		if len(pending) > 0 {
			def, err := lookup(tree, path)
			if err != nil {
				return err
			}
			rows = append(rows, row{key: strings.Join(path, "."), def: def, desc: strings.Join(pending, " ")})
			pending = nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n%s\n\n", meta.Name, meta.Description)
	fmt.Fprintf(&b, "Chart version %s, app version %s, Kubernetes %s.\n\n", meta.Version, meta.AppVersion, meta.KubeVersion)
	b.WriteString("Generated from `values.yaml` by `make chart-docs`; do not edit by hand.\n\n")
	b.WriteString("```sh\nhelm install sidecar-injector charts/sidecar-injector -n sidecar-injector --create-namespace\n")
	b.WriteString("kubectl label namespace <name> sidecar-injection=enabled\n```\n\n")
	b.WriteString("Injected namespaces must allow `iptables-init`'s NET_ADMIN and NET_RAW capabilities\n")
	b.WriteString("(Pod Security level `privileged`; `baseline` and `restricted` refuse the pods).\n")
	b.WriteString("`values.schema.json` refuses unknown keys and wrong types.\n\n")
	b.WriteString("Three Deployments. The **webhook** injects; its ServiceAccount may only get, list and watch\n")
	b.WriteString("namespaces and `envoy-config` ConfigMaps (for its warnings). The **controller** (2 replicas, one\n")
	b.WriteString("leading through a Lease in the release namespace) is the only writer: `envoy-config` ConfigMaps\n")
	b.WriteString("in injected namespaces, Events. The **xDS server** needs no API access.\n")
	b.WriteString("`helm uninstall` removes our `envoy-config` ConfigMaps through the garbage collector (each is owned\n")
	b.WriteString("by the controller's ClusterRole); it leaves the namespace labels, your own `envoy-config`\n")
	b.WriteString("ConfigMaps, and running injected pods, whose proxies lose their xDS server until restarted.\n\n")
	b.WriteString("## Values\n\n| key | default | description |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", r.key, strings.ReplaceAll(r.def, "|", "\\|"), strings.ReplaceAll(r.desc, "|", "\\|"))
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), []byte(b.String()), 0o644)
}

func lookup(tree map[string]any, path []string) (string, error) {
	var v any = tree
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return "", fmt.Errorf("values.yaml: %s is not under a mapping", strings.Join(path, "."))
		}
		v = m[k]
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return string(b), nil
}
