package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

const deploymentYAML = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
  namespace: shop
spec:
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
    spec:
      containers:
      - name: api
        image: example.test/checkout:3
        ports: [{containerPort: 10001}]
---
apiVersion: v1
kind: Pod
metadata:
  name: tool
  labels: {sidecar.io/inject: "false"}
spec:
  containers:
  - name: tool
    image: example.test/tool:1
`

func TestExplain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.waitReady()

	explain := func(query, ctype, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, h.base+"/explain"+query, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		resp, b := h.do(h.h2, req)
		return resp.StatusCode, b
	}

	t.Run("workloads in YAML: the same as inject.Explain", func(t *testing.T) {
		code, b := explain("?namespace=default", "application/yaml", deploymentYAML)
		if code != 200 {
			t.Fatalf("HTTP %d: %s", code, b)
		}
		var got []map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("answer is not a JSON array: %v", err)
		}
		want, err := inject.Explain([]byte(deploymentYAML), inject.DefaultConfig(), inject.Overrides{Namespace: "default", InjectorVersion: h.srv.version})
		if err != nil {
			t.Fatal(err)
		}
		wb, _ := json.Marshal(want)
		var wantGeneric []map[string]any
		json.Unmarshal(wb, &wantGeneric)
		if diff := cmp.Diff(wantGeneric, got); diff != "" {
			t.Errorf("/explain differs from inject.Explain (-want +got):\n%s", diff)
		}
		if len(got) != 2 || got[0]["decision"] != "inject" || got[1]["decision"] != "skip" || got[1]["reason"] != "opted_out" {
			t.Errorf("decisions: %v", summarize(got))
		}
		if ws, _ := got[0]["warnings"].([]any); len(ws) == 0 {
			t.Errorf("the moved port is not explained: %v", got[0])
		}
	})
	t.Run("namespace labels", func(t *testing.T) {
		code, b := explain("?namespace-labels=sidecar-injection%3Ddisabled", "application/json",
			`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"a"}]}}`)
		if code != 200 || !bytes.Contains(b, []byte(`"namespace_disabled"`)) {
			t.Errorf("HTTP %d: %s; want a namespace_disabled skip", code, b)
		}
	})
	for _, tc := range []struct {
		name, query, ctype, body string
		code                     int
		msg                      string
	}{
		{"text/plain", "", "text/plain", deploymentYAML, 415, "application/yaml"},
		{"empty", "", "application/yaml", "  \n", 400, "body is empty"},
		{"not YAML", "", "application/yaml", "kind: [unclosed", 400, "explain"},
		{"bad labels", "?namespace-labels=no-equals", "application/yaml", deploymentYAML, 400, "namespace-labels"},
		{"bad namespace", "?namespace=Not_A_Name", "application/yaml", deploymentYAML, 400, "namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := explain(tc.query, tc.ctype, tc.body)
			if code != tc.code || !json.Valid(b) || !bytes.Contains(b, []byte(tc.msg)) {
				t.Errorf("HTTP %d %s; want %d with a JSON message containing %q", code, b, tc.code, tc.msg)
			}
		})
	}
	if v := gatherValue(t, h.reg, "sidecar_injector_explain_requests_total", map[string]string{"result": "ok"}); v != 2 {
		t.Errorf("explain ok counted %v, want 2", v)
	}
}

func summarize(es []map[string]any) []string {
	var out []string
	for _, e := range es {
		out = append(out, e["decision"].(string)+"/"+e["reason"].(string))
	}
	return out
}

func TestParseLabels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		want    map[string]string
		wantErr string
	}{
		{"", map[string]string{}, ""},
		{"sidecar-injection=enabled", map[string]string{"sidecar-injection": "enabled"}, ""},
		{" a=1 , b.example.com/c=x ", map[string]string{"a": "1", "b.example.com/c": "x"}, ""},
		{"a", nil, "want key=value"},
		{"a=1,a=2", nil, "given twice"},
		{"bad key!=1", nil, "label key"},
		{"a=" + strings.Repeat("v", 64), nil, "value"},
	} {
		got, err := ParseLabels(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseLabels(%q) error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseLabels(%q): %v", tc.in, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseLabels(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
