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

// compareDecoders decodes body with the fast and the reference decoder. The
// fast one may refuse (the caller then falls back), but whatever it accepts
// must decode exactly as the reference decodes it. A body with a quantity
// outside the grammar, which both would parse (for up to a minute), is not
// decoded: decodeReview never decodes one.
func compareDecoders(t *testing.T, body []byte) (fastOK bool) {
	t.Helper()
	if inject.CheckQuantities(body, "request", "object") != nil {
		return false
	}
	var fast, ref typedReview
	errFast := decodeFast(body, &fast)
	errRef := decodeJSON(body, &ref)
	if errFast != nil {
		return false
	}
	if errRef != nil {
		t.Fatalf("the fast decoder accepts what the reference refuses (%v): %q", errRef, body)
	}
	if !reflect.DeepEqual(fast, ref) {
		jf, _ := json.Marshal(fast)
		jr, _ := json.Marshal(ref)
		t.Fatalf("decoders differ:\nreference %s\nfast      %s\ninput %q", jr, jf, body)
	}
	return true
}

// The places where JSON decoders usually disagree.
func TestFastDecoderMatchesReference(t *testing.T) {
	t.Parallel()
	const envelope = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"n","operation":"CREATE","object":%s}}`
	for _, tc := range []struct {
		name, object string
		fastOK       bool // the fast decoder accepts it
	}{
		{"escaped key", `{"metadata":{"name":"p"},"sp\u0065c":{"containers":[{"name":"a"}]}}`, true},
		{"case of keys", `{"metadata":{"name":"p"},"Spec":{"hostNetwork":true},"spec":{"HostNetwork":true}}`, true},
		{"lone surrogates and NUL", `{"metadata":{"name":"p\ud800x","labels":{"a":"\udc00","b":"\u0000"}}}`, true},
		{"line and paragraph separators, BOM", `{"metadata":{"name":"p\u2028\u2029\ufeff"}}`, true},
		{"duplicate spec: merged", `{"metadata":{"name":"p"},"spec":{"initContainers":[{"name":"i"}]},"spec":{"containers":[{"name":"a"}]}}`, true},
		{"duplicate metadata: merged", `{"metadata":{"labels":{"a":"1"}},"metadata":{"labels":{"b":"2"},"name":"x"}}`, true},
		{"duplicate map key", `{"metadata":{"name":"p","labels":{"k":"v","k":"w"}}}`, true},
		{"duplicate, then null", `{"metadata":{"name":"p"},"spec":{"securityContext":{"runAsUser":1337,"runAsUser":null}}}`, true},
		{"nulls", `{"metadata":{"labels":null,"annotations":null,"name":"p"},"spec":{"containers":null,"securityContext":null,"hostNetwork":null}}`, true},
		{"null element", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a"},null]}}`, true},
		{"negative zero", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":-0}]}]}}`, true},
		{"exponent into an int", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":1e3}]}]}}`, false},
		{"fraction into an int", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":80.0}]}]}}`, false},
		{"int32 overflow", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","ports":[{"containerPort":4294967377}]}]}}`, false},
		{"int64 overflow", `{"metadata":{"name":"p"},"spec":{"terminationGracePeriodSeconds":9223372036854775808}}`, false},
		{"string for a bool", `{"metadata":{"name":"p"},"spec":{"hostNetwork":"true"}}`, false},
		{"time", `{"metadata":{"name":"p","creationTimestamp":"2024-01-01T00:00:00Z"}}`, true},
		{"bad time", `{"metadata":{"name":"p","creationTimestamp":"garbage"}}`, false},
		{"quantities", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1500m","memory":null}}}]}}`, true},
		{"bad quantity", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1e3m"}}}]}}`, false},
		{"int-or-string", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":"http"}},"livenessProbe":{"tcpSocket":{"port":8080}}}]}}`, true},
		{"int-or-string forms", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":-0}},"livenessProbe":{"tcpSocket":{"port":""}},"startupProbe":{"grpc":{"port":1},"httpGet":{"port":"h\u0074tp"}}}]}}`, true},
		{"int-or-string null and non-ASCII", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":null}},"livenessProbe":{"tcpSocket":{"port":"pört"}}}]}}`, true},
		{"int-or-string: an int, then a string", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":8080,"port":"http"}}}]}}`, true},
		{"int-or-string int32 overflow", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":2147483648}}}]}}`, false},
		{"quantity built to be expensive", `{"spec":{"containers":[{"name":"a","resources":{"requests":{"cpu":"1E-100000000"}}}]}}`, false},
		{"int-or-string fraction", `{"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":80.5}}}]}}`, false},
		{"quantity forms", `{"spec":{"overhead":{"cpu":" 1 ","memory":1024,"x":null},"volumes":[{"name":"v","emptyDir":{"sizeLimit":"1Gi"}}]}}`, true},
		{"bad int-or-string", `{"metadata":{"name":"p"},"spec":{"containers":[{"name":"a","readinessProbe":{"httpGet":{"port":true}}}]}}`, false},
		{"type meta", `{"kind":"Pod","apiVersion":"v1","Kind":"X","metadata":{"name":"p"}}`, true},
		{"empty keys", `{"":1,"metadata":{"name":"p","":{"":[]}}}`, true},
		{"object for an array", `{"metadata":{"name":"p"},"spec":{"containers":{}}}`, false},
		{"number for a string map", `{"metadata":{"name":"p","annotations":{"k":1}}}`, false},
		{"wrong type in status", `{"metadata":{"name":"p"},"status":{"phase":5}}`, false},
		{"null object", `null`, true},
		{"empty object", `{}`, true},
		{"array", `[]`, false},
		{"string", `"x"`, false},
		{"number", `1`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fastOK := compareDecoders(t, []byte(fmt.Sprintf(envelope, tc.object)))
			if fastOK != tc.fastOK {
				t.Errorf("the fast decoder accepts it: %v, want %v", fastOK, tc.fastOK)
			}
		})
	}
}

// FuzzDecodeTyped: whatever the fast decoder accepts decodes exactly as the
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
