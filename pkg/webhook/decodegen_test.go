package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"reflect"
	"regexp"
	"testing"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/sidecar-injector/internal/jsongen"
)

const generatedDecoder = "zz_generated.decode.go"

// TestGeneratedDecoderUpToDate regenerates the review decoder from the
// types it decodes (-update writes it): a field added to corev1.Pod by a
// k8s.io/api upgrade fails here until the decoder is regenerated.
func TestGeneratedDecoderUpToDate(t *testing.T) {
	src, err := jsongen.Generate(jsongen.Config{
		Package:   "webhook",
		PkgPath:   reflect.TypeFor[typedReview]().PkgPath(),
		Generator: "TestGeneratedDecoderUpToDate (go test ./pkg/webhook -run TestGeneratedDecoderUpToDate -update)",
		Roots:     []reflect.Type{reflect.TypeFor[typedReview]()},
		Guards:    map[reflect.Type]string{reflect.TypeFor[resource.Quantity](): "guardQuantity"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(generatedDecoder, src, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(generatedDecoder)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, src) {
		t.Fatalf("%s is out of date with the types it decodes: run go test ./pkg/webhook -run TestGeneratedDecoderUpToDate -update", generatedDecoder)
	}
}

// TestGeneratedDecoderEveryField decodes reviews whose pod has every field
// set, with both the generated and the fast decoder: a field the generated
// code misnames, misses or mistypes makes them differ.
func TestGeneratedDecoderEveryField(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var rev typedReview
		fill(rng, reflect.ValueOf(&rev).Elem(), 0)
		body, err := json.Marshal(rev)
		if err != nil {
			t.Fatal(err)
		}
		var gen, fast typedReview
		if err := decodeGenerated(body, &gen); err != nil {
			t.Fatalf("seed %d: the generated decoder gives up (%v) on a review of %d bytes", seed, err, len(body))
		}
		if err := decodeFast(body, &fast); err != nil {
			t.Fatalf("seed %d: fast decoder: %v", seed, err)
		}
		if diff := cmp.Diff(fast, gen, cmp.Exporter(func(reflect.Type) bool { return true })); diff != "" {
			t.Fatalf("seed %d: generated and fast decoders differ (-fast +generated):\n%s", seed, diff)
		}
		memberNames(t, body, seen)
	}
	// Every member the generated code knows was in some review.
	src, err := os.ReadFile(generatedDecoder)
	if err != nil {
		t.Fatal(err)
	}
	cases := regexp.MustCompile(`(?m)^\s*case "([^"]*)":$`).FindAllSubmatch(src, -1)
	if len(cases) < 500 {
		t.Fatalf("only %d member names in %s", len(cases), generatedDecoder)
	}
	for _, c := range cases {
		if !seen[string(c[1])] {
			t.Errorf("no filled review has a member %q", c[1])
		}
	}
}

// memberNames adds the object member names in body to seen.
func memberNames(t *testing.T, body []byte, seen map[string]bool) {
	d := jsontext.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := d.ReadToken()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if k, _ := d.StackIndex(d.StackDepth()); k == '{' && tok.Kind() == '"' && d.StackPointer().LastToken() == tok.String() {
			seen[tok.String()] = true
		}
	}
}

// fill sets v and everything under it to random non-zero values (or, for
// some pointers, slices and maps, to nil or empty), with valid quantities,
// times and int-or-strings.
func fill(rng *rand.Rand, v reflect.Value, depth int) {
	if depth > 40 {
		return
	}
	switch v.Addr().Interface().(type) {
	case *resource.Quantity:
		v.Set(reflect.ValueOf(resource.MustParse([]string{"100m", "1", "1.5Gi", "64Mi", "2k", "0"}[rng.IntN(6)])))
		return
	case *intstr.IntOrString:
		if rng.IntN(2) == 0 {
			v.Set(reflect.ValueOf(intstr.FromInt32(rng.Int32N(65536))))
		} else {
			v.Set(reflect.ValueOf(intstr.FromString(word(rng))))
		}
		return
	case *metav1.Time:
		v.Set(reflect.ValueOf(metav1.Unix(rng.Int64N(2e9), 0)))
		return
	case *metav1.MicroTime:
		v.Set(reflect.ValueOf(metav1.NewMicroTime(time.Unix(rng.Int64N(2e9), rng.Int64N(1e6)*1000))))
		return
	case *metav1.FieldsV1:
		v.Set(reflect.ValueOf(*metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{}}}`)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(word(rng))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(rng.Uint64()) >> (64 - v.Type().Bits())) // the whole range, negative too
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(rng.Uint64() >> (64 - v.Type().Bits()))
	case reflect.Pointer:
		if rng.IntN(8) == 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(rng, v.Elem(), depth+1)
	case reflect.Slice:
		n := rng.IntN(3)
		if rng.IntN(6) == 0 {
			return // nil
		}
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fill(rng, v.Index(i), depth+1)
		}
	case reflect.Map:
		if rng.IntN(6) == 0 {
			return
		}
		v.Set(reflect.MakeMap(v.Type()))
		for range rng.IntN(3) {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(rng, k, depth+1)
			fill(rng, e, depth+1)
			v.SetMapIndex(k, e)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Field(i)
			if !v.Type().Field(i).IsExported() {
				if !v.Type().Field(i).Anonymous {
					continue
				}
				f = reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem() // an embedded unexported struct
			}
			fill(rng, f, depth+1)
		}
	}
}

func word(rng *rand.Rand) string {
	return []string{"a", "web", "TCP", "app.kubernetes.io/name", "10.0.0.1", "", "x-y_z.0", "IfNotPresent"}[rng.IntN(8)]
}
