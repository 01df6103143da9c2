package inject

import (
	"encoding/json"
	"fmt"
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

func (s *Status) encode() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("marshal status: %v", err)) // plain values only
	}
	return string(b)
}
