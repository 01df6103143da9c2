package webhook

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestWorkloadWarnings: the validating entry for workloads runs the engine
// on the pod template and answers with warnings only, never a deny.
func TestWorkloadWarnings(t *testing.T) {
	h := newHarness(t)
	deployment := func(spec string) string {
		return `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"shop","namespace":"ns"},` +
			`"spec":{"template":{"metadata":{"labels":{"app":"shop"}},"spec":` + spec + `}}}`
	}
	review := func(group, kind, op, object string) []byte {
		return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1",` +
			`"kind":{"group":"` + group + `","version":"v1","kind":"` + kind + `"},"name":"shop","namespace":"ns","operation":"` + op + `","object":` + object + `}}`)
	}
	for _, tc := range []struct {
		name, path string
		body       []byte
		want       []string // substrings, one per warning, in order; nil: no warnings
	}{
		{"port moved", PathWorkload, review("apps", "Deployment", "CREATE", deployment(`{"containers":[{"name":"app","ports":[{"containerPort":10001}]}]}`)),
			[]string{"pods of deployment/shop: proxy ports moved because the app uses them: inbound 10001→10003"}},
		{"refused", PathWorkload, review("apps", "Deployment", "UPDATE", deployment(`{"securityContext":{"runAsUser":1337},"containers":[{"name":"app"}]}`)),
			[]string{`pods of deployment/shop will be refused: container "app" would run as UID 1337`}},
		{"audit", PathWorkloadAudit, review("apps", "Deployment", "CREATE", deployment(`{"securityContext":{"runAsUser":1337},"containers":[{"name":"app"}]}`)),
			[]string{"pods of deployment/shop would be refused if injection were enabled"}},
		{"cronjob", PathWorkload, review("batch", "CronJob", "CREATE", `{"kind":"CronJob","metadata":{"name":"shop"},"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"a","ports":[{"containerPort":9901}]}]}}}}}}`),
			[]string{"pods of cronjob/shop: proxy ports moved because the app uses them: admin 9901→10003"}},
		{"opted out", PathWorkload, review("apps", "Deployment", "CREATE", `{"spec":{"template":{"metadata":{"labels":{"sidecar.io/inject":"false"}},"spec":{"securityContext":{"runAsUser":1337},"containers":[{"name":"a"}]}}}}`), nil},
		{"clean", PathWorkload, review("apps", "Deployment", "CREATE", deployment(`{"containers":[{"name":"app","ports":[{"containerPort":8080}]}]}`)), nil},
		{"not a workload", PathWorkload, review("", "ConfigMap", "CREATE", `{"data":{}}`), nil},
		{"unreadable", PathWorkload, review("apps", "Deployment", "CREATE", `{"spec":{"template":{"spec":{"containers":"x"}}}}`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := h.post(tc.path, "application/json", tc.body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			a := decodeAnswer(t, body)
			if !a.Response.Allowed || a.Response.UID != "u1" || a.Response.Patch != nil {
				t.Fatalf("answer %+v: want allowed, uid u1, no patch", a.Response)
			}
			if len(a.Response.Warnings) != len(tc.want) {
				w, _ := json.Marshal(a.Response.Warnings)
				t.Fatalf("warnings %s, want %d", w, len(tc.want))
			}
			for i, want := range tc.want {
				if !strings.Contains(a.Response.Warnings[i], want) {
					t.Errorf("warning %q lacks %q", a.Response.Warnings[i], want)
				}
			}
		})
	}
}
