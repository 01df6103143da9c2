package webhook

import (
	"encoding/json"
	"errors"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	kjson "sigs.k8s.io/json"

	"github.com/sidecar-injector/sidecar-injector/internal/jsondec"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// decodeJSON decodes as the apiserver does: keys match field names case
// sensitively ("Spec" is not "spec"), so the typed pod the engine sees and
// the raw JSON the patch applies to agree on every path. Duplicate keys: the
// last one wins. Nesting deeper than 10,000 levels is an error. It is the
// reference decoder; decodeTyped's fast path must agree with it.
func decodeJSON(data []byte, v any) error {
	return kjson.UnmarshalCaseSensitivePreserveInts(data, v)
}

// fastJSON is the fast decoder: github.com/go-json-experiment/json (the
// reference implementation of encoding/json/v2), set like decodeJSON where
// the two differ by default: duplicate keys allowed (the last one wins) and
// case-sensitive keys (its default). It decodes a review with its pod about
// twice as fast as decodeJSON with half the allocations (BenchmarkDecodeReview),
// and decoding is most of a webhook request's CPU. It checks UTF-8, syntax
// and nesting depth itself, so a body goes to it without a validation pass.
var fastJSON = jsonv2.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true), jsonv2.MatchCaseInsensitiveNames(false))

// decodeFast decodes data into v with the fast decoder.
func decodeFast(data []byte, v any) error { return jsonv2.Unmarshal(data, v, fastJSON) }

// decodeGenerated decodes a review with the decoder generated for its types
// (zz_generated.decode.go, by internal/jsongen): the fast decoder's result
// without its reflection and name lookups, about twice as fast
// (BenchmarkDecodeReview). It gives up (jsondec.ErrOutside) on what it
// leaves to the fast decoder: escaped names, numbers with a fraction or an
// exponent, invalid UTF-8, a value of the wrong kind; and on a quantity
// that could be expensive to parse (guardQuantity), which decodeReview
// checks before any other decoder sees it.
func decodeGenerated(body []byte, v *typedReview) error {
	return jsondec.Decode(body, func(d *jsondec.Decoder) error { return decWebhookTypedReview(d, v) })
}

// errExpensiveQuantity ends a generated decode: the quantity goes through
// inject.CheckQuantities first.
var errExpensiveQuantity = errors.New("a quantity that could be expensive to parse")

// guardQuantity keeps a quantity that could be expensive to parse from
// resource.Quantity's parser in the generated decoder.
func guardQuantity(raw []byte) error {
	if inject.ExpensiveQuantityJSON(raw) {
		return errExpensiveQuantity
	}
	return nil
}

// decodeTyped decodes a review with request.object as a Pod, in one pass,
// with the libraries: the fast decoder, and what it refuses (invalid UTF-8
// included, which the reference replaces with U+FFFD) with the reference
// decoder. FuzzDecodeTyped checks that whatever the generated or the fast
// decoder accepts decodes exactly as the reference decodes it.
func decodeTyped(body []byte) (*typedReview, bool) {
	var fast typedReview
	if decodeFast(body, &fast) == nil {
		return &fast, true
	}
	var ref typedReview
	if decodeJSON(body, &ref) == nil {
		return &ref, true
	}
	return nil, false
}

// describeDecodeError explains a decodeJSON error, naming the field. It is
// off the hot path: it decodes again with encoding/json, whose error types
// carry the field and the types.
func describeDecodeError(data []byte, fresh any, err error, prefix string) string {
	if err2 := json.Unmarshal(data, fresh); err2 != nil {
		return describeJSONError(err2, prefix)
	}
	return describeJSONError(err, prefix)
}
