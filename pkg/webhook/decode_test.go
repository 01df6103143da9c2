package webhook

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// compareDecoders decodes body with the generated, the fast and the
// reference decoder. The generated one may give up and the fast one refuse
// (the caller then falls back), but whatever the generated one accepts must
// decode exactly as the fast one decodes it, and whatever the fast one
// accepts exactly as the reference decodes it. A body with a quantity
// outside the grammar, which all would parse (for up to a minute), is not
// decoded: decodeReview never decodes one.
func compareDecoders(t *testing.T, body []byte) (genOK, fastOK bool) {
	t.Helper()
	var gen, fast, ref typedReview
	errGen := decodeGenerated(body, &gen)
	if errGen != nil && inject.CheckQuantities(body, "request", "object") != nil {
		return false, false
	}
	errFast := decodeFast(body, &fast)
	errRef := decodeJSON(body, &ref)
	if errGen == nil {
		if bad := inject.CheckQuantities(body, "request", "object"); bad != nil {
			t.Fatalf("the generated decoder accepts a quantity that CheckQuantities denies (%v): %q", bad, body)
		}
		if errFast != nil {
			t.Fatalf("the generated decoder accepts what the fast one refuses (%v): %q", errFast, body)
		}
		wantSameDecode(t, body, "fast", &fast, "generated", &gen)
	}
	if errFast != nil {
		return false, false
	}
	if errRef != nil {
		t.Fatalf("the fast decoder accepts what the reference refuses (%v): %q", errRef, body)
	}
	wantSameDecode(t, body, "reference", &ref, "fast", &fast)
	return errGen == nil, true
}

// wantSameDecode fails t unless two decoders' results are the same.
func wantSameDecode(t *testing.T, body []byte, nameA string, a *typedReview, nameB string, b *typedReview) {
	t.Helper()
	if !reflect.DeepEqual(a, b) {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		t.Fatalf("the %s and %s decoders differ:\n%-9s %s\n%-9s %s\ninput %q", nameA, nameB, nameA, ja, nameB, jb, body)
	}
}

// The places where JSON decoders usually disagree.
func TestFastDecoderMatchesReference(t *testing.T) {
	t.Parallel()
	const envelope = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"n","operation":"CREATE","object":%s}}`
	for _, tc := range []struct {
		name, object string
		fastOK       bool // the fast decoder accepts it
		genOK        bool // the generated decoder does not give up on it
	}{
		{"escaped key", `{"metadata":{"name":"p"},"sp\u0065c":{"containers":[{"name":"a"}]}}`, true, false},
		{"case of keys", `{"metadata":{"name":"p"},"Spec":{"hostNetwork":true},"spec":{"HostNetwork":true}}`, true, true},
		{"lone surrogates and NUL", `{"metadata":{"name":"p\ud800x","labels":{"a":"\udc00","b":"\u0000"}}}`, true, false},
		{"line and paragraph separators, BOM", `{"metadata":{"name":"p\u2028\u2029\ufeff"}}`, true, true},
		{"duplicate spec: merged", `{"metadata":{"name":"p"},"spec":{"initContainers":[{"name":"i"}]},"spec":{"containers":[{"name":"a"}]}}`, true, true},
		{"duplicate metadata: merged", `{"metadata":{"labels":{"a":"1"}},"metadata":{"labels":{"b":"2"},"name":"x"}}`, true, true},
		{"duplicate map key", `{"metadata":{"name":"p","labels":{"k":"v","k":"w"}}}`, true, true},
		{"duplicate, then null", `{"metadata":{"name":"p"},"spec":{"securityContext":{"runAsUser":1337,"runAsUser":null}}}`, true, true},
		{"nulls", `{"metadata":{"labels":null,"annotations":null,"name":"p"},"spec":{"containers":null,"securityContext":null,"hostNetwork":null}}`, true, true},
		{"null element", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"},null]}}`, true, true},
		{"negative zero", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":-0}]}]}}`, true, true},
		{"exponent into an int", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":1e3}]}]}}`, false, false},
		{"fraction into an int", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":80.0}]}]}}`, false, false},
		{"int32 overflow", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":4294967377}]}]}}`, false, false},
		{"int64 overflow", `{"metadata":{"name":"p"},"spec":{"terminationGracePeriodSeconds":9223372036854775808}}`, false, false},
		{"string for a bool", `{"metadata":{"name":"p"},"spec":{"hostNetwork":"true"}}`, false, false},
		{"time", `{"metadata":{"name":"p","creationTimestamp":"2024-01-01T00:00:00Z"}}`, true, true},
		{"bad time", `{"metadata":{"name":"p","creationTimestamp":"garbage"}}`, false, false},
		{"quantities", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1500m","memory":null}}}]}}`, true, true},
		{"bad quantity", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1e3m"}}}]}}`, false, false},
		{"int-or-string", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":"http"}},"livenessProbe":{"tcpSocket":{"port":8080}}}]}}`, true, true},
		{"int-or-string forms", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":-0}},"livenessProbe":{"tcpSocket":{"port":""}},"startupProbe":{"grpc":{"port":1},"httpGet":{"port":"h\u0074tp"}}}]}}`, true, true},
		{"int-or-string null and non-ASCII", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":null}},"livenessProbe":{"tcpSocket":{"port":"pört"}}}]}}`, true, true},
		{"int-or-string: an int, then a string", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":8080,"port":"http"}}}]}}`, true, true},
		{"int-or-string int32 overflow", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":2147483648}}}]}}`, false, false},
		{"quantity built to be expensive", `{"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"1E-100000000"}}}]}}`, false, false},
		{"int-or-string fraction", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":80.5}}}]}}`, false, false},
		{"quantity forms", `{"spec":{"overhead":{"cpu":" 1 ","memory":1024,"x":null},"volumes":[{"name":"v","emptyDir":{"sizeLimit":"1Gi"}}]}}`, true, true},
		{"bad int-or-string", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":true}}}]}}`, false, false},
		{"type meta", `{"kind":"Pod","apiVersion":"v1","Kind":"X","metadata":{"name":"p"}}`, true, true},
		{"empty keys", `{"":1,"metadata":{"name":"p","":{"":[]}}}`, true, true},
		{"object for an array", `{"metadata":{"name":"p"},"spec":{"containers":{}}}`, false, false},
		{"number for a string map", `{"metadata":{"name":"p","annotations":{"k":1}}}`, false, false},
		{"wrong type in status", `{"metadata":{"name":"p"},"status":{"phase":5}}`, false, false},
		{"null object", `null`, true, true},
		{"empty object", `{}`, true, true},
		{"array", `[]`, false, false},
		{"string", `"x"`, false, false},
		{"number", `1`, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			genOK, fastOK := compareDecoders(t, []byte(fmt.Sprintf(envelope, tc.object)))
			if fastOK != tc.fastOK {
				t.Errorf("the fast decoder accepts it: %v, want %v", fastOK, tc.fastOK)
			}
			if genOK != tc.genOK {
				t.Errorf("the generated decoder accepts it: %v, want %v", genOK, tc.genOK)
			}
		})
	}
}

// FuzzDecodeTyped: whatever the generated decoder accepts decodes exactly as
// the fast one decodes it, and whatever the fast one accepts exactly as the
// reference decoder decodes it.
func FuzzDecodeTyped(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(seedDir, "*.json"))
	if len(files) == 0 {
		f.Fatalf("no seeds under %s", seedDir)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		compareDecoders(t, body)
	})
}
