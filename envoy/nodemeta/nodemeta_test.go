package nodemeta

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// What the injector renders into the overlay, the xDS server parses back.
func TestOverlayMetadataParsesBack(t *testing.T) {
	t.Parallel()
	md := Metadata{Version: Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901,
		AppPorts: []AppPort{{Port: 8080, Name: "http", Protocol: ProtocolTCP}}, ExcludeInboundPorts: []uint32{9000},
		PodIP: "10.0.0.7", IPv6: IPv6Off, ConfigHash: "abc", InjectorVersion: "v1"}
	overlay, err := RenderOverlay(md)
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		Node struct {
			Metadata json.RawMessage `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal([]byte(overlay), &o); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(o.Node.Metadata)
	if err != nil {
		t.Fatalf("Parse(%s): %v", o.Node.Metadata, err)
	}
	if diff := cmp.Diff(md, got); diff != "" {
		t.Errorf("(-rendered +parsed):\n%s", diff)
	}
	if _, err := Parse([]byte(`{"version": "v1", "inboundPort": 1, "outboundPort": 2, "statsPort": 3, "adminPort": 4, "inboundport": 5}`)); !errors.Is(err, ErrMetadataInvalid) {
		t.Errorf("a key differing only in case: %v, want ErrMetadataInvalid", err)
	}
}
