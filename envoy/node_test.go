package envoy

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

const goodMetadata = `{"version": "v1", "inboundPort": 10001, "outboundPort": 10002, "statsPort": 10090, "adminPort": 9901,
 "appPorts": [{"port": 8080, "name": "http", "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
 "excludeInboundPorts": [9000], "podIP": "fd00::17", "ipv6": "on", "configHash": "abc", "injectorVersion": "v1.2.3"}`

func structOf(t testing.TB, doc string) *structpb.Struct {
	t.Helper()
	s := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(doc), s); err != nil {
		t.Fatalf("test metadata %s: %v", doc, err)
	}
	return s
}

func TestParseNodeMetadata(t *testing.T) {
	t.Parallel()
	got, err := ParseNodeMetadata(structOf(t, goodMetadata))
	if err != nil {
		t.Fatal(err)
	}
	want := nodemeta.Metadata{
		Version: "v1", InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9901,
		AppPorts:            []nodemeta.AppPort{{Port: 8080, Name: "http", Protocol: "TCP"}, {Port: 53, Protocol: "UDP"}},
		ExcludeInboundPorts: []uint32{9000}, PodIP: "fd00::17", IPv6: "on", ConfigHash: "abc", InjectorVersion: "v1.2.3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Each bad input gets an error of the right class that names the key and
// says what is wanted.
func TestParseNodeMetadataErrors(t *testing.T) {
	t.Parallel()
	base := map[string]any{}
	if err := json.Unmarshal([]byte(goodMetadata), &base); err != nil {
		t.Fatal(err)
	}
	with := func(k string, v any) string {
		m := map[string]any{}
		for kk, vv := range base {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	for name, tc := range map[string]struct {
		doc   string
		class error
		want  string
	}{
		"empty":                   {`{}`, nodemeta.ErrMetadataMissing, "no metadata"},
		"no version":              {with("version", nil), nodemeta.ErrMetadataInvalid, `"version" missing`},
		"version number":          {with("version", 1), nodemeta.ErrMetadataInvalid, "cannot unmarshal number into key version of type string"},
		"newer version":           {with("version", "v2"), nodemeta.ErrMetadataVersion, `version "v2", this xDS server reads "v1"`},
		"unknown key":             {with("colour", "red"), nodemeta.ErrMetadataInvalid, `unknown field "colour"`},
		"port missing":            {with("statsPort", nil), nodemeta.ErrMetadataInvalid, `statsPort missing or 0`},
		"port as string":          {with("inboundPort", "10001"), nodemeta.ErrMetadataInvalid, "cannot unmarshal string into key inboundPort of type uint32"},
		"port fraction":           {with("inboundPort", 10001.5), nodemeta.ErrMetadataInvalid, "cannot unmarshal number 10001.5 into key inboundPort"},
		"port 0":                  {with("outboundPort", 0), nodemeta.ErrMetadataInvalid, "outboundPort missing or 0: want a port 1-65535"},
		"port 70000":              {with("adminPort", 70000), nodemeta.ErrMetadataInvalid, "adminPort 70000: want a port 1-65535"},
		"port negative":           {with("adminPort", -1), nodemeta.ErrMetadataInvalid, "cannot unmarshal number -1 into key adminPort"},
		"port huge":               {with("adminPort", 1e300), nodemeta.ErrMetadataInvalid, "cannot unmarshal number 1e+300 into key adminPort"},
		"proxy ports clash":       {with("statsPort", 10001), nodemeta.ErrMetadataInvalid, "inboundPort and statsPort are both 10001"},
		"appPorts not list":       {with("appPorts", "8080"), nodemeta.ErrMetadataInvalid, "cannot unmarshal string into key appPorts of type []nodemeta.AppPort"},
		"appPort not object":      {with("appPorts", []any{8080}), nodemeta.ErrMetadataInvalid, "cannot unmarshal number into key appPorts of type nodemeta.AppPort"},
		"appPort no port":         {with("appPorts", []any{map[string]any{"name": "x"}}), nodemeta.ErrMetadataInvalid, `appPorts[0].port 0: want a port 1-65535`},
		"appPort unknown key":     {with("appPorts", []any{map[string]any{"port": 1, "hostPort": 2}}), nodemeta.ErrMetadataInvalid, `unknown field "appPorts[0].hostPort"`},
		"appPort bad protocol":    {with("appPorts", []any{map[string]any{"port": 1, "protocol": "HTTP"}}), nodemeta.ErrMetadataInvalid, `appPorts[0].protocol "HTTP": want TCP, UDP or SCTP`},
		"appPort on proxy port":   {with("appPorts", []any{map[string]any{"port": 10002}}), nodemeta.ErrMetadataInvalid, "appPorts[0].port 10002 is also outboundPort"},
		"appPort 0":               {with("appPorts", []any{map[string]any{"port": 0}}), nodemeta.ErrMetadataInvalid, "appPorts[0].port 0: want a port 1-65535"},
		"exclusion bad":           {with("excludeInboundPorts", []any{1, "x"}), nodemeta.ErrMetadataInvalid, "cannot unmarshal string into key excludeInboundPorts of type uint32"},
		"podIP unexpanded":        {with("podIP", "$(POD_IP)"), nodemeta.ErrMetadataInvalid, "lacks env POD_IP"},
		"podIP garbage":           {with("podIP", "garbage"), nodemeta.ErrMetadataInvalid, `podIP "garbage": want an IP address`},
		"ipv6 bad":                {with("ipv6", "yes"), nodemeta.ErrMetadataInvalid, `ipv6 "yes": want auto, on or off`},
		"long string":             {with("configHash", strings.Repeat("a", 300)), nodemeta.ErrMetadataInvalid, "configHash is 300 bytes long"},
		"configHash absent":       {with("configHash", nil), nil, ""},
		"configHash null":         {strings.Replace(goodMetadata, `"abc"`, "null", 1), nil, ""}, // null is absent, as in Kubernetes objects
		"newer version, new keys": {`{"version": "v2", "colour": "red", "inboundPort": "any"}`, nodemeta.ErrMetadataVersion, `version "v2"`},
		"key case":                {strings.Replace(goodMetadata, `"inboundPort"`, `"InboundPort"`, 1), nodemeta.ErrMetadataInvalid, `unknown field "InboundPort"`},
	} {
		s := structOf(t, tc.doc)
		_, err := ParseNodeMetadata(s)
		if tc.class == nil {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want %v containing %q", name, err, tc.class, tc.want)
		}
	}
	if _, err := ParseNodeMetadata(nil); !errors.Is(err, nodemeta.ErrMetadataMissing) {
		t.Errorf("nil: %v", err)
	}
	many := make([]any, nodemeta.MaxAppPorts+1)
	for i := range many {
		many[i] = map[string]any{"port": i%60000 + 1}
	}
	if _, err := ParseNodeMetadata(structOf(t, with("appPorts", many))); err == nil || !strings.Contains(err.Error(), "at most 1024") {
		t.Errorf("too many app ports: %v", err)
	}
}

func TestRenderOverlay(t *testing.T) {
	t.Parallel()
	md, err := ParseNodeMetadata(structOf(t, goodMetadata))
	if err != nil {
		t.Fatal(err)
	}
	a, err := nodemeta.RenderOverlay(md)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := nodemeta.RenderOverlay(md)
	if a != b {
		t.Error("overlay not deterministic")
	}
	var doc map[string]map[string]any
	if err := json.Unmarshal([]byte(a), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc) != 1 || doc["node"]["id"] != "$(POD_NAME).$(POD_NAMESPACE)" || doc["node"]["cluster"] != "$(POD_NAMESPACE)" {
		t.Errorf("overlay %s: want only node with the downward-API id and cluster", a)
	}
}

// FuzzParseNodeMetadata: never a panic; whatever is accepted is valid and
// survives MetadataStruct -> ParseNodeMetadata unchanged.
func FuzzParseNodeMetadata(f *testing.F) {
	for _, seed := range []string{
		goodMetadata,
		`{}`,
		`{"version": "v1", "inboundPort": 10001, "outboundPort": 10002, "statsPort": 10090, "adminPort": 9901}`,
		`{"version": "v1", "inboundPort": 10003, "outboundPort": 10004, "statsPort": 10091, "adminPort": 9901, "appPorts": [{"port": 10001}, {"port": 10002, "protocol": "SCTP"}], "excludeInboundPorts": [10001]}`,
		`{"version": "v2"}`,
		`{"version": "v1", "inboundPort": 1e400}`,
		`{"version": "v1", "appPorts": [{"port": -0}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		s := &structpb.Struct{}
		if protojson.Unmarshal(doc, s) != nil {
			return
		}
		md, err := ParseNodeMetadata(s)
		if err != nil {
			if !errors.Is(err, nodemeta.ErrMetadataMissing) && !errors.Is(err, nodemeta.ErrMetadataVersion) && !errors.Is(err, nodemeta.ErrMetadataInvalid) {
				t.Fatalf("error of no known class: %v", err)
			}
			return
		}
		if err := md.Validate(); err != nil {
			t.Fatalf("accepted metadata fails Validate: %v", err)
		}
		again, err := MetadataStruct(md)
		if err != nil {
			t.Fatal(err)
		}
		md2, err := ParseNodeMetadata(again)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if diff := cmp.Diff(md, md2, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
