package inject

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestHashCoversThePodShape lists every field of the injector config and
// whether changing it changes the config hash in sidecar.io/status (and so
// marks running pods stale). A new config field fails this test until it is
// listed here: decide whether it shapes the injected pod.
func TestHashCoversThePodShape(t *testing.T) {
	t.Parallel()
	changesHash := map[string]bool{
		"apiVersion": false,
		"kind":       false,

		"proxy.image":           true,
		"proxy.initImage":       true,
		"proxy.imagePullPolicy": true,
		"proxy.uid":             true,
		"proxy.gid":             true,
		"proxy.logLevel":        true,
		"proxy.nativeSidecar":   true,
		"proxy.resources":       true,
		"proxy.initResources":   true,
		"proxy.concurrency":     true,
		// What a pod may ask for, checked at admission: no injected pod
		// is made differently.
		"proxy.maxCPU":    false,
		"proxy.maxMemory": false,

		"ports.inbound":    true,
		"ports.outbound":   true,
		"ports.stats":      true,
		"ports.admin":      true,
		"ports.rangeStart": true,
		"ports.rangeEnd":   true,

		"redirect.iptablesMode":            true,
		"redirect.ipv6":                    true,
		"redirect.excludeOutboundIPRanges": true,
		"redirect.excludeOutboundPorts":    true,
		"redirect.excludeInboundPorts":     true,

		// Who is injected, not how: no running pod changes.
		"injection.defaultPolicy":         false,
		"injection.injectorNamespace":     false,
		"injection.excludedNamespaces":    false,
		"injection.allowedSettings":       false,
		"injection.prometheusAnnotations": true,

		// The bootstrap every pod mounts points at it; Envoy reads it at start.
		"xds.address": true,
		"xds.port":    true,
		"xds.caCert":  true, // the bootstrap then speaks TLS and verifies against it
		"xds.tls":     true, // TLS with the controller's --xds-ca-file: a stable marker, not the CA's content
	}
	fields := leafFields(reflect.TypeFor[Config](), "", nil)
	for path := range changesHash {
		if !slices.ContainsFunc(fields, func(f leafField) bool { return f.path == path }) {
			t.Errorf("%s is listed here but is no field of Config", path)
		}
	}
	base := DefaultConfig()
	for _, f := range fields {
		want, ok := changesHash[f.path]
		if !ok {
			t.Errorf("config field %s is not listed: add it to this table, saying whether it shapes injected pods (then add it to podShape)", f.path)
			continue
		}
		t.Run(f.path, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.Proxy.Resources = *base.Proxy.Resources.DeepCopy()
			cfg.Proxy.InitResources = *base.Proxy.InitResources.DeepCopy()
			cfg.Injection.AllowedSettings = slices.Clone(base.Injection.AllowedSettings)
			mutate(t, reflect.ValueOf(&cfg).Elem().FieldByIndex(f.index))
			if got := cfg.Hash() != base.Hash(); got != want {
				t.Errorf("changing %s changes the hash: %v, want %v", f.path, got, want)
			}
		})
	}
}

// TestExcludedNamespacesKeepPodsCurrent: adding a namespace to
// excludedNamespaces (the example of the issue) keeps the hash.
func TestExcludedNamespacesKeepPodsCurrent(t *testing.T) {
	t.Parallel()
	a := DefaultConfig()
	b := DefaultConfig()
	b.Injection.ExcludedNamespaces = []string{"batch", "legacy"}
	b.Injection.AllowedSettings = []string{"log-level"}
	b.Injection.DefaultPolicy = PolicyEnabled
	if a.Hash() != b.Hash() {
		t.Errorf("hash %s -> %s after changing only who is injected", a.Hash(), b.Hash())
	}
}

type leafField struct {
	path  string
	index []int
}

// leafFields lists Config's fields by JSON path; resource requirements
// count as one field.
func leafFields(t reflect.Type, prefix string, index []int) []leafField {
	var out []leafField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		path := prefix + name
		idx := append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[corev1.ResourceRequirements]() && f.Type != reflect.TypeFor[resource.Quantity]() {
			out = append(out, leafFields(f.Type, path+".", idx)...)
			continue
		}
		out = append(out, leafField{path: path, index: idx})
	}
	return out
}

// mutate changes v to another value of its type.
func mutate(t *testing.T, v reflect.Value) {
	t.Helper()
	switch {
	case v.Type() == reflect.TypeFor[corev1.ResourceRequirements]():
		r := v.Addr().Interface().(*corev1.ResourceRequirements)
		r.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
		return
	case v.Type() == reflect.TypeFor[resource.Quantity]():
		q := v.Addr().Interface().(*resource.Quantity)
		q.Add(resource.MustParse("1"))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "-changed")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint16:
		v.SetUint(v.Uint() + 1)
	case reflect.Pointer:
		n := reflect.New(v.Type().Elem())
		if !v.IsNil() {
			n.Elem().Set(v.Elem())
		}
		mutate(t, n.Elem())
		v.Set(n)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.ValueOf("changed").Convert(v.Type().Elem())))
	default:
		t.Fatalf("mutate: no rule for %s", v.Type())
	}
}
