package webhook

import "testing"

// BenchmarkDecodeReview measures the two decoders of a review with its pod:
// the reference (sigs.k8s.io/json, as the apiserver decodes) and the fast
// one (go-json-experiment/json) that decodeTyped tries first. The fast one
// is kept only while it is the faster: compare them when either changes.
func BenchmarkDecodeReview(b *testing.B) {
	body := reviewBody(b, admissionV1, podRequest(b, loadPod(b)))
	for _, d := range []struct {
		name string
		dec  func([]byte, any) error
	}{
		{"reference=sigs.k8s.io-json", decodeJSON},
		{"fast=go-json-experiment", decodeFast},
		{"generated", func(b []byte, v any) error { return decodeGenerated(b, v.(*typedReview)) }},
	} {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var r typedReview
				if err := d.dec(body, &r); err != nil || r.Request == nil || r.Request.Object == nil {
					b.Fatalf("decode: %v", err)
				}
			}
		})
	}
}
