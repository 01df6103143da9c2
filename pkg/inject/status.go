package inject

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/internal/jsonenc"
)

// Status is the sidecar.io/status annotation: what the injector added and
// with which config. It makes re-injection a no-op and uninject exact.
type Status struct {
	Version        string   `json:"version"`    // injector version
	ConfigHash     string   `json:"configHash"` // Config.Hash() at injection
	Native         bool     `json:"native"`     // envoy is a native sidecar (init container)
	Ports          Ports    `json:"ports"`
	InitContainers []string `json:"initContainers"`
	Containers     []string `json:"containers,omitempty"`
	Volumes        []string `json:"volumes"`
	// Annotations lists annotations the injector added (besides the status).
	Annotations []string `json:"annotations,omitempty"`
	// Empty lists collections of an offline manifest that were null, [] or
	// {} before injection (JSON pointer -> "null", "[]" or "{}"), so that
	// uninject gives them back exactly; the apiserver never sends such fields.
	Empty map[string]string `json:"empty,omitempty"`
}

// ParseStatus reads a sidecar.io/status value.
func ParseStatus(s string) (*Status, error) {
	var st Status
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return nil, fmt.Errorf("annotation %s: not valid status JSON: %w", StatusAnnotation, err)
	}
	if st.ConfigHash == "" {
		return nil, fmt.Errorf("annotation %s: no configHash", StatusAnnotation)
	}
	return &st, nil
}

// encode writes s as encoding/json does (TestStatusEncoding compares
// them), without its reflection: every injection writes one.
func (s *Status) encode() string {
	if s.Empty != nil { // offline manifests only: a map, in key order
		b, err := json.Marshal(s)
		if err != nil {
			panic(fmt.Sprintf("marshal status: %v", err)) // plain values only
		}
		return string(b)
	}
	b := make([]byte, 0, 256)
	b = append(b, `{"version":`...)
	b = jsonenc.String(b, s.Version)
	b = append(b, `,"configHash":`...)
	b = jsonenc.String(b, s.ConfigHash)
	b = append(b, `,"native":`...)
	b = strconv.AppendBool(b, s.Native)
	b = append(b, `,"ports":{"inbound":`...)
	b = strconv.AppendUint(b, uint64(s.Ports.Inbound), 10)
	b = append(b, `,"outbound":`...)
	b = strconv.AppendUint(b, uint64(s.Ports.Outbound), 10)
	b = append(b, `,"stats":`...)
	b = strconv.AppendUint(b, uint64(s.Ports.Stats), 10)
	b = append(b, `,"admin":`...)
	b = strconv.AppendUint(b, uint64(s.Ports.Admin), 10)
	b = append(b, `},"initContainers":`...)
	b = jsonenc.Strings(b, s.InitContainers)
	if len(s.Containers) > 0 {
		b = append(b, `,"containers":`...)
		b = jsonenc.Strings(b, s.Containers)
	}
	b = append(b, `,"volumes":`...)
	b = jsonenc.Strings(b, s.Volumes)
	if len(s.Annotations) > 0 {
		b = append(b, `,"annotations":`...)
		b = jsonenc.Strings(b, s.Annotations)
	}
	return string(append(b, '}'))
}

// trusted checks a status found on a pod against what the injector itself
// adds, since anyone who creates a pod can write the annotation. It returns
// the status reduced to our own fixed names (the only things re-injection
// and uninject ever remove), or nil when the status does not describe the
// pod: it lists a container, volume or annotation the injector never adds,
// or claims a container of ours the pod does not have (a status claiming
// the current hash on a pod without our containers would skip injection
// and the name checks). The warning says why it was ignored.
func (st *Status) trusted(pod *corev1.Pod) (*Status, string) {
	foreign := func(list, ours []string) string {
		for _, n := range list {
			if !slices.Contains(ours, n) {
				return n
			}
		}
		return ""
	}
	var odd string
	switch {
	case foreign(st.InitContainers, []string{InitContainerName, ProxyContainerName}) != "":
		odd = "init container " + strconv.Quote(truncate(foreign(st.InitContainers, []string{InitContainerName, ProxyContainerName})))
	case foreign(st.Containers, []string{ProxyContainerName}) != "":
		odd = "container " + strconv.Quote(truncate(foreign(st.Containers, []string{ProxyContainerName})))
	case foreign(st.Volumes, []string{ConfigVolumeName}) != "":
		odd = "volume " + strconv.Quote(truncate(foreign(st.Volumes, []string{ConfigVolumeName})))
	case foreign(st.Annotations, []string{promScrape, promPort, promPath}) != "":
		odd = "annotation " + strconv.Quote(truncate(foreign(st.Annotations, []string{promScrape, promPort, promPath})))
	}
	if odd != "" {
		return nil, "ignored " + StatusAnnotation + ": it lists " + odd + ", which the injector never adds"
	}
	has := func(cs []corev1.Container, name string) bool {
		return slices.ContainsFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	}
	if len(st.InitContainers)+len(st.Containers) == 0 {
		return nil, "ignored " + StatusAnnotation + ": it lists none of the injector's containers"
	}
	for _, n := range st.InitContainers {
		if !has(pod.Spec.InitContainers, n) {
			return nil, "ignored " + StatusAnnotation + ": it lists init container " + strconv.Quote(n) + ", which the pod does not have"
		}
	}
	for _, n := range st.Containers {
		if !has(pod.Spec.Containers, n) {
			return nil, "ignored " + StatusAnnotation + ": it lists container " + strconv.Quote(n) + ", which the pod does not have"
		}
	}
	return st, ""
}
