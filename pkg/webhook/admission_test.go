package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

const testUID = "7f0e6f2a-1b8c-4d3e-9a5f-2c4b6d8e0a1c"

// admissionCase is one row of RELIABILITY.md "Admission inputs".
type admissionCase struct {
	row  int
	name string

	health bool   // send to the health port instead of the TLS port
	method string // default POST
	path   string // default /mutate
	ctype  string // default application/json
	body   func(t *testing.T, h *harness) []byte

	wantHTTP int // expected HTTP status

	// For HTTP 200 answers.
	wantAPIVersion string // default admission.k8s.io/v1
	wantAllowed    bool
	wantCode       int32 // status.code when denied
	wantPatch      bool
	wantMsg        []string // substrings of status.message
	wantWarn       []string // substrings of the joined warnings
	wantWarnings   int      // exact number of warnings, -1: any

	// The metric moved by exactly one for this pair.
	wantResult Result
	wantReason inject.Reason

	check func(t *testing.T, h *harness, body []byte, a answer)
}

// simple builds a CREATE review of the test pod changed by mutate.
func simple(mutate func(p map[string]any, r request)) func(*testing.T, *harness) []byte {
	return func(t *testing.T, _ *harness) []byte {
		p := loadPod(t)
		r := podRequest(t, p)
		if mutate != nil {
			mutate(p, r)
			raw, err := json.Marshal(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, stillThePod := r["object"].(json.RawMessage); stillThePod {
				r["object"] = json.RawMessage(raw)
			}
		}
		return reviewBody(t, admissionV1, r)
	}
}

func raw(s string) func(*testing.T, *harness) []byte {
	return func(*testing.T, *harness) []byte { return []byte(s) }
}

func setAnnotation(p map[string]any, k, v string) { obj(obj(p, "metadata"), "annotations")[k] = v }

func TestAdmissionInputs(t *testing.T) {
	h := newHarness(t)
	h.waitReady()

	cases := []admissionCase{
		{row: 1, name: "non-JSON body", body: raw("this is not JSON"), wantHTTP: 400,
			wantResult: ResultError, wantReason: ReasonBadRequest,
			check: wantErrorBody(400, "not an AdmissionReview JSON document")},
		{row: 1, name: "JSON but not an object", body: raw(`[1,2,3]`), wantHTTP: 400,
			wantResult: ResultError, wantReason: ReasonBadRequest, check: wantErrorBody(400, "got a JSON array")},
		{row: 2, name: "text/plain", ctype: "text/plain", body: simple(nil), wantHTTP: 415,
			wantResult: ResultError, wantReason: ReasonUnsupportedMediaType, check: wantErrorBody(415, "want application/json")},
		{row: 2, name: "no content type", ctype: "-", body: simple(nil), wantHTTP: 415,
			wantResult: ResultError, wantReason: ReasonUnsupportedMediaType},
		{row: 2, name: "json with a charset parameter is fine", ctype: "application/json; charset=utf-8", body: simple(nil),
			wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 0,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled},
		{row: 2, name: "json in another charset", ctype: "application/json; charset=latin1", body: simple(nil), wantHTTP: 415,
			wantResult: ResultError, wantReason: ReasonUnsupportedMediaType},
		{row: 3, name: "empty body", body: raw(""), wantHTTP: 400,
			wantResult: ResultError, wantReason: ReasonBadRequest, check: wantErrorBody(400, "body is empty")},
		{row: 4, name: "body over 7 MiB", body: func(t *testing.T, h *harness) []byte {
			return append(simple(nil)(t, h), bytes.Repeat([]byte(" "), DefaultMaxBodyBytes)...)
		}, wantHTTP: 413, wantResult: ResultError, wantReason: ReasonBodyTooLarge, check: wantErrorBody(413, "at most 7340032")},
		{row: 5, name: "request null", body: raw(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`), wantHTTP: 400,
			wantResult: ResultError, wantReason: ReasonBadRequest, check: wantErrorBody(400, "request is missing or null")},
		{row: 5, name: "request missing", body: raw(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), wantHTTP: 400,
			wantResult: ResultError, wantReason: ReasonBadRequest},
		{row: 5, name: "no uid", body: simple(func(_ map[string]any, r request) { delete(r, "uid") }), wantHTTP: 400,
			wantResult: ResultError, wantReason: ReasonBadRequest, check: wantErrorBody(400, "request.uid is missing")},
		{row: 6, name: "apiVersion v2", body: func(t *testing.T, h *harness) []byte {
			return reviewBody(t, "admission.k8s.io/v2", podRequest(t, loadPod(t)))
		}, wantHTTP: 400, wantResult: ResultError, wantReason: ReasonBadRequest, check: wantErrorBody(400, `apiVersion "admission.k8s.io/v2"`)},
		{row: 6, name: "kind not AdmissionReview", body: raw(`{"apiVersion":"admission.k8s.io/v1","kind":"TokenReview","request":{"uid":"x"}}`), wantHTTP: 400,
			wantResult: ResultError, wantReason: ReasonBadRequest, check: wantErrorBody(400, `kind "TokenReview"`)},
		{row: 7, name: "v1beta1 answered as v1beta1", body: func(t *testing.T, h *harness) []byte {
			return reviewBody(t, admissionV1beta1, podRequest(t, loadPod(t)))
		}, wantHTTP: 200, wantAPIVersion: admissionV1beta1, wantAllowed: true, wantPatch: true, wantWarnings: 0,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled},
		{row: 8, name: "kind Deployment", body: simple(func(_ map[string]any, r request) {
			r["kind"] = map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"}
			r["object"] = map[string]any{"kind": "Deployment", "apiVersion": "apps/v1"}
		}), wantHTTP: 200, wantAllowed: true, wantResult: ResultAllowed, wantReason: ReasonNotPod},
		{row: 8, name: "kind ConfigMap", body: simple(func(_ map[string]any, r request) {
			r["kind"] = map[string]any{"group": "", "version": "v1", "kind": "ConfigMap"}
		}), wantHTTP: 200, wantAllowed: true, wantResult: ResultAllowed, wantReason: ReasonNotPod},
		{row: 8, name: "subresource status", body: simple(func(_ map[string]any, r request) {
			r["subResource"], r["operation"] = "status", "UPDATE"
		}), wantHTTP: 200, wantAllowed: true, wantResult: ResultAllowed, wantReason: ReasonSubresource},
		{row: 8, name: "subresource ephemeralcontainers", body: simple(func(_ map[string]any, r request) {
			r["subResource"] = "ephemeralcontainers"
		}), wantHTTP: 200, wantAllowed: true, wantResult: ResultAllowed, wantReason: ReasonSubresource},
		{row: 9, name: "UPDATE", body: simple(func(_ map[string]any, r request) {
			r["operation"], r["oldObject"] = "UPDATE", r["object"]
		}), wantHTTP: 200, wantAllowed: true, wantResult: ResultAllowed, wantReason: ReasonNotCreate},
		{row: 9, name: "DELETE with object null", body: simple(func(_ map[string]any, r request) {
			r["operation"], r["oldObject"], r["object"] = "DELETE", r["object"], nil
		}), wantHTTP: 200, wantAllowed: true, wantResult: ResultAllowed, wantReason: ReasonNotCreate},
		{row: 9, name: "CONNECT", body: simple(func(_ map[string]any, r request) {
			r["operation"], r["subResource"], r["object"] = "CONNECT", "", map[string]any{"kind": "PodExecOptions"}
		}), wantHTTP: 200, wantAllowed: true, wantResult: ResultAllowed, wantReason: ReasonNotCreate},
		{row: 10, name: "CREATE with object null", body: simple(func(_ map[string]any, r request) { r["object"] = nil }),
			wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object is missing or null"},
			wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 10, name: "CREATE with object missing", body: simple(func(_ map[string]any, r request) { delete(r, "object") }),
			wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object"}, wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 10, name: "CREATE with a number as object", body: simple(func(_ map[string]any, r request) { r["object"] = 42 }),
			wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object", "got a JSON number, want an object"},
			wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 10, name: "CREATE with containers a string", body: simple(func(_ map[string]any, r request) {
			r["object"] = map[string]any{"spec": map[string]any{"containers": "web"}}
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object.spec.containers: got a JSON string, want an array"},
			wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 10, name: "CREATE with a bad quantity", body: simple(func(p map[string]any, _ request) {
			obj(container(p, 0), "resources")["limits"] = map[string]any{"cpu": "lots"}
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object"}, wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 10, name: "CREATE with another kind as object", body: simple(func(p map[string]any, _ request) { p["kind"] = "Service" }),
			wantHTTP: 200, wantCode: 400, wantMsg: []string{`request.object.kind "Service": want Pod`}, wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 11, name: "namespace empty", body: simple(func(p map[string]any, r request) {
			r["namespace"] = ""
			delete(obj(p, "metadata"), "namespace")
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.namespace is empty", "never assumes default"},
			wantResult: ResultDenied, wantReason: ReasonNoNamespace},
		{row: 12, name: "hostNetwork", body: simple(func(p map[string]any, _ request) { obj(p, "spec")["hostNetwork"] = true }),
			wantHTTP: 200, wantAllowed: true, wantWarnings: 1, wantWarn: []string{"no sidecar (host_network)"},
			wantResult: ResultSkipped, wantReason: inject.ReasonHostNetwork},
		{row: 12, name: "mirror pod", body: simple(func(p map[string]any, _ request) { setAnnotation(p, inject.MirrorPodAnnotation, "abc") }),
			wantHTTP: 200, wantAllowed: true, wantWarnings: 1, wantWarn: []string{"no sidecar (mirror_pod)"},
			wantResult: ResultSkipped, wantReason: inject.ReasonMirrorPod},
		{row: 12, name: "kube-system", body: inNamespace("kube-system"), wantHTTP: 200, wantAllowed: true, wantWarnings: 1,
			wantWarn: []string{"excluded_namespace"}, wantResult: ResultSkipped, wantReason: inject.ReasonExcludedNamespace},
		{row: 12, name: "kube-public", body: inNamespace("kube-public"), wantHTTP: 200, wantAllowed: true, wantWarnings: 1,
			wantResult: ResultSkipped, wantReason: inject.ReasonExcludedNamespace},
		{row: 12, name: "kube-node-lease", body: inNamespace("kube-node-lease"), wantHTTP: 200, wantAllowed: true, wantWarnings: 1,
			wantResult: ResultSkipped, wantReason: inject.ReasonExcludedNamespace},
		{row: 12, name: "the injector's namespace", body: inNamespace("sidecar-injector"), wantHTTP: 200, wantAllowed: true, wantWarnings: 1,
			wantWarn: []string{"injector_namespace"}, wantResult: ResultSkipped, wantReason: inject.ReasonInjectorNamespace},
		{row: 12, name: "opted out: allowed, quiet", body: simple(func(p map[string]any, _ request) {
			obj(obj(p, "metadata"), "labels")[inject.InjectKey] = "false"
		}), wantHTTP: 200, wantAllowed: true, wantWarnings: 0, wantResult: ResultSkipped, wantReason: inject.ReasonOptedOut},
		{row: 13, name: "already injected with the same config", body: func(t *testing.T, h *harness) []byte {
			// Inject through the webhook, apply the patch, send the result.
			first := simple(nil)(t, h)
			_, b := h.post("/mutate", "application/json", first)
			injected := applyAnswer(t, first, decodeAnswer(t, b))
			var p map[string]any
			if err := json.Unmarshal(injected, &p); err != nil {
				t.Fatal(err)
			}
			return reviewBody(t, admissionV1, podRequest(t, p))
		}, wantHTTP: 200, wantAllowed: true, wantPatch: false, wantWarnings: 0,
			wantResult: ResultSkipped, wantReason: inject.ReasonAlreadyInjected},
		{row: 14, name: "a container named envoy", body: simple(func(p map[string]any, _ request) { container(p, 0)["name"] = "envoy" }),
			wantHTTP: 200, wantCode: 400, wantMsg: []string{"spec.containers[0]", `"envoy"`}, wantResult: ResultDenied, wantReason: inject.ReasonNameConflict},
		{row: 14, name: "an init container named iptables-init", body: simple(func(p map[string]any, _ request) {
			obj(p, "spec")["initContainers"] = []any{map[string]any{"name": "iptables-init", "image": "busybox"}}
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"spec.initContainers[0]", `"iptables-init"`}, wantResult: ResultDenied, wantReason: inject.ReasonNameConflict},
		{row: 15, name: "app uses the inbound port", body: simple(func(p map[string]any, _ request) {
			container(p, 0)["ports"] = []any{map[string]any{"containerPort": 10001}}
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 1, wantWarn: []string{"proxy ports moved", "10001"},
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled, check: wantInboundPortNot(10001)},
		{row: 15, name: "probe on the inbound port", body: simple(func(p map[string]any, _ request) {
			container(p, 0)["readinessProbe"] = map[string]any{"tcpSocket": map[string]any{"port": 10001}}
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarn: []string{"10001"}, wantWarnings: -1,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled, check: wantInboundPortNot(10001)},
		{row: 15, name: "hostPort on the inbound port", body: simple(func(p map[string]any, _ request) {
			container(p, 0)["ports"] = []any{map[string]any{"containerPort": 80, "hostPort": 10001}}
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarn: []string{"10001"}, wantWarnings: 1,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled, check: wantInboundPortNot(10001)},
		{row: 16, name: "pod runs as UID 1337", body: simple(func(p map[string]any, _ request) {
			obj(p, "spec")["securityContext"] = map[string]any{"runAsUser": 1337}
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"spec.securityContext.runAsUser", "1337"},
			wantResult: ResultDenied, wantReason: inject.ReasonProxyUIDConflict},
		{row: 16, name: "container runs as UID 1337", body: simple(func(p map[string]any, _ request) {
			container(p, 0)["securityContext"] = map[string]any{"runAsUser": 1337}
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"spec.containers[0].securityContext.runAsUser", "1337"},
			wantResult: ResultDenied, wantReason: inject.ReasonProxyUIDConflict},
		{row: 17, name: "pod-level runAsNonRoot", body: simple(func(p map[string]any, _ request) {
			obj(p, "spec")["securityContext"] = map[string]any{"runAsNonRoot": true, "runAsUser": 1000}
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 1, wantWarn: []string{"runAsNonRoot"},
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled, check: wantInitRunsAsRoot},
		{row: 18, name: "generateName only", body: simple(func(p map[string]any, r request) {
			delete(obj(p, "metadata"), "name")
			obj(p, "metadata")["generateName"] = "gen-only-7x9-"
			delete(r, "name")
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 0,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled,
			check: func(t *testing.T, h *harness, _ []byte, _ answer) {
				if !strings.Contains(h.logs.String(), `"pod":"gen-only-7x9-"`) {
					t.Errorf("the decision log line does not name the pod by its generateName:\n%s", lastLines(h.logs.String(), 3))
				}
			}},
		{row: 19, name: "dryRun: the same answer", body: simple(func(_ map[string]any, r request) { r["dryRun"] = true }),
			wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 0,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled,
			check: func(t *testing.T, h *harness, _ []byte, a answer) {
				_, b := h.post("/mutate", "application/json", simple(nil)(t, h))
				if diff := cmp.Diff(decodeAnswer(t, b), a); diff != "" {
					t.Errorf("dry-run answer differs from the normal one (-normal +dryRun):\n%s", diff)
				}
			}},
		{row: 20, name: "fields unknown to our k8s.io/api survive", body: simple(func(p map[string]any, _ request) {
			obj(p, "spec")["futurePodField"] = map[string]any{"mode": "fast", "level": 3}
			container(p, 0)["futureContainerField"] = []any{"a", "b"}
			obj(p, "spec")["initContainers"] = []any{map[string]any{"name": "migrate", "image": "migrate:1", "restartPolicy": "Always", "futureInitField": true}}
			obj(p, "metadata")["futureMetaField"] = "kept"
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: -1,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled, check: wantUnknownFieldsKept},
		{row: 21, name: "JSON nested 100,000 deep", body: raw(strings.Repeat("[", 100000) + strings.Repeat("]", 100000)),
			wantHTTP: 400, wantResult: ResultError, wantReason: ReasonBadRequest, check: wantErrorBody(400, "depth")},
		{row: 21, name: "100,000 deep inside the pod", body: func(t *testing.T, h *harness) []byte {
			b := simple(nil)(t, h)
			deep := `"deep":` + strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000) + ","
			return bytes.Replace(b, []byte(`"spec":{`), []byte(`"spec":{`+deep), 1)
		}, wantHTTP: 400, wantResult: ResultError, wantReason: ReasonBadRequest},
		{row: 22, name: "invalid UTF-8 in labels and annotations", body: func(t *testing.T, h *harness) []byte {
			b := simple(func(p map[string]any, _ request) {
				obj(obj(p, "metadata"), "labels")["app.kubernetes.io/name"] = "BAD1"
				setAnnotation(p, "note", "BAD2")
				setAnnotation(p, "sidecar.io/log-level", "BAD3")
			})(t, h)
			for _, m := range []string{"BAD1", "BAD2", "BAD3"} {
				b = bytes.Replace(b, []byte(m), []byte("x\xff\xfe\xc3(\u202e\\u001b[31m"), 1)
			}
			return b
		}, wantHTTP: 200, wantCode: 400, wantMsg: []string{"annotation sidecar.io/log-level"},
			wantResult: ResultDenied, wantReason: inject.ReasonInvalidSetting},
		{row: 23, name: "duplicate keys: the last wins, every time", body: func(t *testing.T, h *harness) []byte {
			b := simple(nil)(t, h)
			b = bytes.Replace(b, []byte(`"uid":"`+testUID+`"`), []byte(`"uid":"first","uid":"`+testUID+`"`), 1)
			b = bytes.Replace(b, []byte(`"operation":"CREATE"`), []byte(`"operation":"DELETE","operation":"CREATE"`), 1)
			return bytes.Replace(b, []byte(`"spec":{`), []byte(`"spec":{"hostNetwork":true,"hostNetwork":false,`), 1)
		}, wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 0,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled,
			check: func(t *testing.T, h *harness, body []byte, a answer) {
				for range 3 {
					_, b := h.post("/mutate", "application/json", body)
					if diff := cmp.Diff(a, decodeAnswer(t, b)); diff != "" {
						t.Fatalf("the same request answered differently:\n%s", diff)
					}
				}
			}},
		{row: 23, name: "keys match case-sensitively, as in the apiserver", body: simple(func(p map[string]any, _ request) {
			obj(p, "spec")["HostNetwork"] = true // not hostNetwork: an unknown field
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 0,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled, check: wantUnknownFieldKept("HostNetwork")},
		{row: 10, name: "CREATE with metadata null", body: simple(func(p map[string]any, _ request) { p["metadata"] = nil }),
			wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object.metadata"}, wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 24, name: "forbidden setting proxy-image", body: simple(func(p map[string]any, _ request) {
			setAnnotation(p, "sidecar.io/proxy-image", "evil.example/envoy:latest")
		}), wantHTTP: 200, wantCode: 403, wantMsg: []string{"annotation sidecar.io/proxy-image", "not allowed"},
			wantResult: ResultDenied, wantReason: inject.ReasonForbiddenSetting},
		{row: 25, name: "port 70000", body: simple(func(p map[string]any, _ request) { setAnnotation(p, "sidecar.io/inbound-port", "70000") }),
			wantHTTP: 200, wantCode: 400, wantMsg: []string{"annotation sidecar.io/inbound-port", "70000"},
			wantResult: ResultDenied, wantReason: inject.ReasonInvalidSetting},
		{row: 25, name: "CIDR garbage", body: simple(func(p map[string]any, _ request) {
			setAnnotation(p, "sidecar.io/exclude-outbound-ip-ranges", "garbage")
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"annotation sidecar.io/exclude-outbound-ip-ranges", "garbage"},
			wantResult: ResultDenied, wantReason: inject.ReasonInvalidSetting},
		{row: 25, name: "a 100 KB value", body: simple(func(p map[string]any, _ request) {
			setAnnotation(p, "sidecar.io/exclude-outbound-ports", strings.Repeat("1,", 50000))
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"annotation sidecar.io/exclude-outbound-ports"},
			wantResult: ResultDenied, wantReason: inject.ReasonInvalidSetting,
			check: func(t *testing.T, _ *harness, _ []byte, a answer) {
				if n := len(a.Response.Status.Message); n > 4096 {
					t.Errorf("deny message is %d bytes; the value must not be echoed in full", n)
				}
			}},
		{row: 26, name: "1,000 containers", body: simple(func(p map[string]any, _ request) {
			cs := make([]any, 1000)
			for i := range cs {
				cs[i] = map[string]any{"name": fmt.Sprintf("c%d", i), "image": "app:1",
					"ports": []any{map[string]any{"containerPort": 10001 + i}}}
			}
			obj(p, "spec")["containers"] = cs
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"no free port"}, wantResult: ResultDenied, wantReason: inject.ReasonNoFreePort},
		{row: 26, name: "1,000 ports in one container", body: simple(func(p map[string]any, _ request) {
			ports := make([]any, 1000)
			for i := range ports {
				ports[i] = map[string]any{"containerPort": 20000 + i}
			}
			container(p, 0)["ports"] = ports
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: -1,
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled},
		{row: 32, name: "proxy-cpu 1E-100000000", body: simple(func(p map[string]any, _ request) {
			setAnnotation(p, "sidecar.io/proxy-cpu", "1E-100000000")
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"annotation sidecar.io/proxy-cpu", "1E-100000000", "at most 32 characters"},
			wantResult: ResultDenied, wantReason: inject.ReasonInvalidSetting},
		{row: 32, name: "proxy-memory with a 1,000-digit mantissa", body: simple(func(p map[string]any, _ request) {
			setAnnotation(p, "sidecar.io/proxy-memory", strings.Repeat("9", 1000))
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"annotation sidecar.io/proxy-memory", "at most 32 characters"},
			wantResult: ResultDenied, wantReason: inject.ReasonInvalidSetting},
		{row: 32, name: "proxy-cpu over proxy.maxCPU", body: simple(func(p map[string]any, _ request) {
			setAnnotation(p, "sidecar.io/proxy-cpu", "64")
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"annotation sidecar.io/proxy-cpu", `"64"`, "proxy.maxCPU=2"},
			wantResult: ResultDenied, wantReason: inject.ReasonInvalidSetting},
		{row: 32, name: "the pod's own limit 1E+100000000", body: simple(func(p map[string]any, _ request) {
			container(p, 0)["resources"] = map[string]any{"limits": map[string]any{"memory": "1E+100000000"}}
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object.spec.containers[0].resources.limits.memory", "1E+100000000"},
			wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 32, name: "a downward-API divisor 1E-100000000", body: simple(func(p map[string]any, _ request) {
			container(p, 0)["env"] = []any{map[string]any{"name": "CPU", "valueFrom": map[string]any{"resourceFieldRef": map[string]any{"resource": "limits.cpu", "divisor": "1E-100000000"}}}}
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object.spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor", "1E-100000000"},
			wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 32, name: "an expensive limit hidden by a second key of the same name", body: func(t *testing.T, h *harness) []byte {
			body := simple(func(p map[string]any, _ request) {
				container(p, 0)["resources"] = map[string]any{"limits": map[string]any{"memory": "HIDDEN"}}
			})(t, h)
			return bytes.Replace(body, []byte(`"memory":"HIDDEN"`), []byte(`"memory":"1E-100000000","memory":"1Gi"`), 1)
		}, wantHTTP: 200, wantCode: 400, wantMsg: []string{"request.object.spec.containers[0].resources.limits.memory", "1E-100000000"},
			wantResult: ResultDenied, wantReason: ReasonBadObject},
		{row: 32, name: "an UPDATE carrying an expensive quantity is allowed unread", body: simple(func(p map[string]any, r request) {
			container(p, 0)["resources"] = map[string]any{"requests": map[string]any{"cpu": "1E-100000000"}}
			r["operation"] = "UPDATE"
		}), wantHTTP: 200, wantAllowed: true, wantResult: ResultAllowed, wantReason: ReasonNotCreate},
		{row: 36, name: "a forged status listing the app container, older hash", body: simple(func(p map[string]any, _ request) {
			setAnnotation(p, inject.StatusAnnotation, `{"configHash":"0123456789abcdef","initContainers":["iptables-init"],"containers":["`+container(p, 0)["name"].(string)+`"],"volumes":["envoy-config"]}`)
		}), wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 1, wantWarn: []string{"ignored sidecar.io/status", "never adds"},
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled, check: wantNoRemove},
		{row: 36, name: "a forged status claiming the current hash", body: func(t *testing.T, h *harness) []byte {
			return simple(func(p map[string]any, _ request) {
				setAnnotation(p, inject.StatusAnnotation, `{"configHash":"`+h.srv.config.get().injector.Hash()+`","initContainers":["iptables-init","envoy"],"volumes":["envoy-config"]}`)
			})(t, h)
		}, wantHTTP: 200, wantAllowed: true, wantPatch: true, wantWarnings: 1, wantWarn: []string{"ignored sidecar.io/status", "does not have"},
			wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled, check: wantNoRemove},
		{row: 37, name: "an Istio-injected pod", body: simple(func(p map[string]any, _ request) {
			obj(p, "spec")["initContainers"] = []any{map[string]any{"name": "istio-init", "image": "istio/proxyv2"}}
			obj(p, "spec")["containers"] = append(containers(p), map[string]any{"name": "istio-proxy", "image": "istio/proxyv2",
				"securityContext": map[string]any{"runAsUser": 1337}})
		}), wantHTTP: 200, wantCode: 400, wantMsg: []string{"istio-init", "Istio"}, wantResult: ResultDenied, wantReason: inject.ReasonOtherMesh},
		{row: 37, name: "a Linkerd-injected pod in audit mode", path: "/audit", body: simple(func(p map[string]any, _ request) {
			obj(p, "spec")["containers"] = append(containers(p), map[string]any{"name": "linkerd-proxy", "image": "linkerd/proxy"})
		}), wantHTTP: 200, wantAllowed: true, wantWarnings: 1, wantWarn: []string{"would deny (other_mesh)"},
			wantResult: ResultAudited, wantReason: inject.ReasonOtherMesh},
		{row: 30, name: "/mutate on the health port", health: true, body: simple(nil), wantHTTP: 404},
		{row: 30, name: "/metrics on the TLS port", method: http.MethodGet, path: "/metrics", wantHTTP: 404},
		{row: 30, name: "GET /mutate", method: http.MethodGet, wantHTTP: 405},
		{name: "audit mode: decision reported, no patch", path: "/audit", body: simple(nil), wantHTTP: 200, wantAllowed: true,
			wantWarnings: 1, wantWarn: []string{"sidecar audit: would inject (namespace_enabled)"},
			wantResult: ResultAudited, wantReason: inject.ReasonNamespaceEnabled},
		{name: "audit mode: a deny is reported, not enforced", path: "/audit", body: simple(func(p map[string]any, _ request) {
			setAnnotation(p, "sidecar.io/inbound-port", "70000")
		}), wantHTTP: 200, wantAllowed: true, wantWarnings: 1, wantWarn: []string{"sidecar audit: would deny (invalid_setting)", "sidecar.io/inbound-port"},
			wantResult: ResultAudited, wantReason: inject.ReasonInvalidSetting},
		{name: "audit mode: a skip is reported", path: "/audit", body: simple(func(p map[string]any, _ request) {
			obj(p, "spec")["hostNetwork"] = true
		}), wantHTTP: 200, wantAllowed: true, wantWarnings: 1, wantWarn: []string{"sidecar audit: would not inject (host_network)"},
			wantResult: ResultAudited, wantReason: inject.ReasonHostNetwork},
		{name: "apiserver timeout parameter honoured", path: "/mutate?timeout=10s", body: simple(nil), wantHTTP: 200,
			wantAllowed: true, wantPatch: true, wantWarnings: 0, wantResult: ResultInjected, wantReason: inject.ReasonNamespaceEnabled},
		{name: "malformed timeout parameter", path: "/mutate?timeout=soon", body: simple(nil), wantHTTP: 400,
			wantResult: ResultError, wantReason: ReasonBadRequest, check: wantErrorBody(400, "timeout")},
	}

	for _, tc := range cases {
		name := tc.name
		if tc.row > 0 {
			name = fmt.Sprintf("row%02d/%s", tc.row, tc.name)
		}
		t.Run(name, func(t *testing.T) {
			var body []byte
			if tc.body != nil {
				body = tc.body(t, h)
			}
			base, path, method, ctype := h.base, tc.path, tc.method, tc.ctype
			if tc.health {
				base = h.health
			}
			if path == "" {
				path = "/mutate"
			}
			if method == "" {
				method = http.MethodPost
			}
			if ctype == "" {
				ctype = "application/json"
			}
			var before float64
			if tc.wantResult != "" {
				before = h.counter(tc.wantResult, tc.wantReason)
			}
			req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if ctype != "-" {
				req.Header.Set("Content-Type", ctype)
			}
			client := h.h2
			if tc.health {
				client = http.DefaultClient
			}
			start := time.Now()
			resp, b := h.do(client, req)
			elapsed := time.Since(start)
			if resp.StatusCode != tc.wantHTTP {
				t.Fatalf("HTTP %d, want %d; body:\n%.500s", resp.StatusCode, tc.wantHTTP, b)
			}
			if tc.row == 21 && elapsed > time.Second {
				t.Errorf("answered in %s; want within a second", elapsed)
			}
			if !utf8.Valid(b) || (resp.StatusCode != 404 && resp.StatusCode != 405 && !json.Valid(b)) {
				t.Errorf("answer is not valid UTF-8 JSON: %q", b)
			}
			if ct := resp.Header.Get("Content-Type"); resp.StatusCode < 404 || resp.StatusCode > 405 {
				if ct != "application/json" {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
			}
			var a answer
			if resp.StatusCode == http.StatusOK {
				a = decodeAnswer(t, b)
				checkAnswer(t, tc, a)
			}
			if tc.wantResult != "" {
				if got := h.counter(tc.wantResult, tc.wantReason) - before; got != 1 {
					t.Errorf("sidecar_injector_admission_requests_total{result=%q,reason=%q} moved by %v, want 1", tc.wantResult, tc.wantReason, got)
				}
			}
			if tc.check != nil {
				tc.check(t, h, body, a)
			}
		})
	}
}

func checkAnswer(t *testing.T, tc admissionCase, a answer) {
	t.Helper()
	wantAV := tc.wantAPIVersion
	if wantAV == "" {
		wantAV = admissionV1
	}
	if a.APIVersion != wantAV || a.Kind != reviewKind {
		t.Errorf("answer is %s %s, want %s %s", a.APIVersion, a.Kind, wantAV, reviewKind)
	}
	if a.Response.UID != testUID {
		t.Errorf("uid %q, want the request's %q", a.Response.UID, testUID)
	}
	r := a.Response
	if r.Allowed != tc.wantAllowed {
		msg := ""
		if r.Status != nil {
			msg = r.Status.Message
		}
		t.Fatalf("allowed %v, want %v (message %q)", r.Allowed, tc.wantAllowed, msg)
	}
	if !tc.wantAllowed {
		if r.Status == nil || r.Status.Code != tc.wantCode {
			t.Errorf("status %+v, want code %d", r.Status, tc.wantCode)
		}
		if r.PatchType != "" || len(r.Patch) != 0 {
			t.Errorf("a deny carries a patch")
		}
	}
	for _, want := range tc.wantMsg {
		if r.Status == nil || !strings.Contains(r.Status.Message, want) {
			t.Errorf("status message %q does not contain %q", statusMessage(a), want)
		}
	}
	if hasPatch := len(r.Patch) > 0; hasPatch != tc.wantPatch {
		t.Errorf("patch present %v, want %v: %.300s", hasPatch, tc.wantPatch, r.Patch)
	}
	if tc.wantPatch {
		if r.PatchType != "JSONPatch" {
			t.Errorf("patchType %q, want JSONPatch", r.PatchType)
		}
		ops := patchOps(t, r.Patch)
		if len(ops) == 0 {
			t.Errorf("empty patch sent")
		}
		for _, op := range ops {
			if o := op["op"]; o != "add" && o != "replace" && o != "remove" {
				t.Errorf("patch op %q: want add, replace or remove only", o)
			}
		}
	} else if r.PatchType != "" {
		t.Errorf("patchType %q without a patch", r.PatchType)
	}
	if tc.wantWarnings >= 0 && len(r.Warnings) != tc.wantWarnings {
		t.Errorf("%d warnings, want %d: %q", len(r.Warnings), tc.wantWarnings, r.Warnings)
	}
	checkWarnings(t, r.Warnings)
	joined := strings.Join(r.Warnings, "\n")
	for _, want := range tc.wantWarn {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings %q do not contain %q", r.Warnings, want)
		}
	}
}

// checkWarnings asserts the RELIABILITY.md warning limits.
func checkWarnings(t testing.TB, ws []string) {
	t.Helper()
	if len(ws) > MaxWarnings {
		t.Errorf("%d warnings, at most %d allowed", len(ws), MaxWarnings)
	}
	for _, w := range ws {
		if n := utf8.RuneCountInString(w); n > MaxWarningLength || n == 0 {
			t.Errorf("warning of %d characters (want 1-%d): %q", n, MaxWarningLength, w)
		}
		if !utf8.ValidString(w) || strings.ContainsFunc(w, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\u202e' }) {
			t.Errorf("warning is not plain text: %q", w)
		}
	}
}

func statusMessage(a answer) string {
	if a.Response.Status == nil {
		return ""
	}
	return a.Response.Status.Message
}

func inNamespace(ns string) func(*testing.T, *harness) []byte {
	return simple(func(p map[string]any, r request) {
		r["namespace"] = ns
		obj(p, "metadata")["namespace"] = ns
	})
}

func wantErrorBody(code int, contains string) func(*testing.T, *harness, []byte, answer) {
	return func(t *testing.T, h *harness, body []byte, _ answer) {
		// The body of a non-200 answer is a JSON Status: send again and read it.
		req, _ := http.NewRequest(http.MethodPost, h.base+"/mutate", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if code == 415 {
			req.Header.Set("Content-Type", "text/plain")
		}
		if code == 400 && strings.Contains(contains, "timeout") {
			req.URL.RawQuery = "timeout=soon"
		}
		resp, b := h.do(h.h2, req)
		if resp.StatusCode != code {
			t.Fatalf("HTTP %d, want %d", resp.StatusCode, code)
		}
		var st struct {
			Kind    string `json:"kind"`
			Status  string `json:"status"`
			Message string `json:"message"`
			Code    int    `json:"code"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("error body is not JSON: %v: %q", err, b)
		}
		if st.Kind != "Status" || st.Status != "Failure" || st.Code != code || !strings.Contains(st.Message, contains) {
			t.Errorf("error body %+v: want a Status with code %d and a message containing %q", st, code, contains)
		}
	}
}

// applyAnswer applies the answer's patch to the raw object of the request.
func applyAnswer(t testing.TB, reviewJSON []byte, a answer) []byte {
	t.Helper()
	var rev struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(reviewJSON, &rev); err != nil {
		t.Fatal(err)
	}
	if len(a.Response.Patch) == 0 {
		return rev.Request.Object
	}
	p, err := jsonpatch.DecodePatch(a.Response.Patch)
	if err != nil {
		t.Fatalf("patch does not decode: %v", err)
	}
	out, err := p.Apply(rev.Request.Object)
	if err != nil {
		t.Fatalf("patch does not apply to the request's object: %v", err)
	}
	return out
}

func wantUnknownFieldsKept(t *testing.T, _ *harness, body []byte, a answer) {
	out := applyAnswer(t, body, a)
	var pod struct {
		Metadata map[string]any `json:"metadata"`
		Spec     struct {
			FuturePodField any              `json:"futurePodField"`
			Containers     []map[string]any `json:"containers"`
			InitContainers []map[string]any `json:"initContainers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"mode": "fast", "level": float64(3)}, pod.Spec.FuturePodField); diff != "" {
		t.Errorf("spec.futurePodField changed (-want +got):\n%s", diff)
	}
	if pod.Metadata["futureMetaField"] != "kept" {
		t.Errorf("metadata.futureMetaField lost: %v", pod.Metadata)
	}
	var names []string
	foundApp, foundInit := false, false
	for _, c := range pod.Spec.Containers {
		names = append(names, fmt.Sprint(c["name"]))
		if c["name"] == "api" {
			foundApp = true
			if diff := cmp.Diff([]any{"a", "b"}, c["futureContainerField"]); diff != "" {
				t.Errorf("container api lost futureContainerField:\n%s", diff)
			}
		}
	}
	for _, c := range pod.Spec.InitContainers {
		names = append(names, fmt.Sprint(c["name"]))
		if c["name"] == "migrate" {
			foundInit = true
			if c["futureInitField"] != true || c["restartPolicy"] != "Always" {
				t.Errorf("init container migrate lost fields: %v", c)
			}
		}
	}
	if !foundApp || !foundInit || !slices.Contains(names, "envoy") || !slices.Contains(names, "iptables-init") {
		t.Errorf("containers after the patch: %v; want api, migrate, envoy and iptables-init", names)
	}
}

func wantUnknownFieldKept(field string) func(*testing.T, *harness, []byte, answer) {
	return func(t *testing.T, _ *harness, body []byte, a answer) {
		var pod struct {
			Spec map[string]any `json:"spec"`
		}
		if err := json.Unmarshal(applyAnswer(t, body, a), &pod); err != nil {
			t.Fatal(err)
		}
		if _, ok := pod.Spec[field]; !ok {
			t.Errorf("spec.%s lost by the patch", field)
		}
	}
}

func wantInboundPortNot(port int) func(*testing.T, *harness, []byte, answer) {
	return func(t *testing.T, _ *harness, body []byte, a answer) {
		st := statusOf(t, applyAnswer(t, body, a))
		if st.Ports.Inbound == uint16(port) || st.Ports.Inbound == 0 {
			t.Errorf("status records inbound port %d; want it moved off %d", st.Ports.Inbound, port)
		}
	}
}

func statusOf(t testing.TB, podJSON []byte) *inject.Status {
	t.Helper()
	var pod struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(podJSON, &pod); err != nil {
		t.Fatal(err)
	}
	st, err := inject.ParseStatus(pod.Metadata.Annotations[inject.StatusAnnotation])
	if err != nil {
		t.Fatalf("injected pod has no valid status: %v", err)
	}
	return st
}

func wantInitRunsAsRoot(t *testing.T, _ *harness, body []byte, a answer) {
	out := applyAnswer(t, body, a)
	var pod struct {
		Spec struct {
			InitContainers []struct {
				Name            string `json:"name"`
				SecurityContext struct {
					RunAsUser    *int64 `json:"runAsUser"`
					RunAsNonRoot *bool  `json:"runAsNonRoot"`
				} `json:"securityContext"`
			} `json:"initContainers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == inject.InitContainerName {
			sc := c.SecurityContext
			if sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.RunAsNonRoot == nil || *sc.RunAsNonRoot {
				t.Errorf("iptables-init securityContext %+v: want runAsUser 0 and runAsNonRoot false", sc)
			}
			return
		}
	}
	t.Errorf("no iptables-init init container after the patch")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// wantNoRemove: the patch removes nothing (row 36).
func wantNoRemove(t *testing.T, _ *harness, _ []byte, a answer) {
	t.Helper()
	for _, op := range patchOps(t, a.Response.Patch) {
		if op["op"] == "remove" {
			t.Errorf("patch removes %v", op["path"])
		}
	}
}

// labelsOf is a NamespaceLabeler over a map.
type labelsOf map[string]string

func (l labelsOf) NamespaceLabel(ns string) (string, bool) { v, ok := l[ns]; return v, ok }

// TestInvalidNamespaceLabel: the chart's catch-all entry for namespaces
// labelled sidecar-injection=<not enabled|disabled|audit> is answered
// allowed, no patch, with one warning naming the label, the value when the
// cache has it, and the valid values.
func TestInvalidNamespaceLabel(t *testing.T) {
	t.Parallel()
	h := newHarness(t, withServer(func(s *Server) {
		s.labels = labelsOf{"typo": "true", "relabelled": "enabled"}
	}))
	h.waitReady()
	for _, tc := range []struct{ ns, want string }{
		{"typo", `no sidecar: namespace label sidecar-injection="true" is invalid (valid: enabled, disabled, audit)`},
		// Not in the cache, or the cache already shows a valid value: no value named.
		{"unseen", "no sidecar: namespace label sidecar-injection is invalid (valid: enabled, disabled, audit)"},
		{"relabelled", "no sidecar: namespace label sidecar-injection is invalid (valid: enabled, disabled, audit)"},
	} {
		req := podRequest(t, loadPod(t))
		req["namespace"] = tc.ns
		_, b := h.post("/invalid-namespace-label", "application/json", reviewBody(t, "admission.k8s.io/v1", req))
		a := decodeAnswer(t, b)
		if !a.Response.Allowed || len(a.Response.Patch) != 0 || a.Response.Status != nil {
			t.Errorf("%s: answer %+v: want allowed, no patch", tc.ns, a.Response)
		}
		if len(a.Response.Warnings) != 1 || a.Response.Warnings[0] != tc.want {
			t.Errorf("%s: warnings %q, want [%q]", tc.ns, a.Response.Warnings, tc.want)
		}
	}
	if n := h.counter(ResultSkipped, inject.ReasonNamespaceLabelInvalid); n != 3 {
		t.Errorf("requests{skipped, namespace_label_invalid} = %v, want 3", n)
	}
}
