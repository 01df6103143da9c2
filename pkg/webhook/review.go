package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// AdmissionReview API versions answered, each in the version asked.
const (
	admissionV1      = "admission.k8s.io/v1"
	admissionV1beta1 = "admission.k8s.io/v1beta1"
	reviewKind       = "AdmissionReview"
)

// Limits of RELIABILITY.md: warnings per response and characters per warning.
const (
	MaxWarnings      = 5
	MaxWarningLength = 120
)

// The AdmissionReview envelope, reduced to what the webhook reads, decoded
// with small types rather than the k8s.io/api ones.

type groupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// requestMeta is the request without its object.
type requestMeta struct {
	UID         string           `json:"uid"`
	Kind        groupVersionKind `json:"kind"`
	SubResource string           `json:"subResource"`
	Name        string           `json:"name"`
	Namespace   string           `json:"namespace"`
	Operation   string           `json:"operation"`
	DryRun      *bool            `json:"dryRun"`
}

// reviewIn is a decoded review. The hot path decodes request.object as a
// Pod in the same pass as the envelope (pod; typed is true); when that
// fails, the envelope is decoded again with the object left raw (raw), so
// that the object's problem can be reported as a deny carrying the uid.
type reviewIn struct {
	APIVersion string
	Kind       string
	Request    *requestMeta

	typed bool
	pod   *corev1.Pod // typed: request.object, nil when null or missing
	raw   rawObject   // !typed: request.object undecoded
	// badQuantity (!typed) is a quantity in request.object that fails the
	// engine's quantity grammar: the object is never decoded as a Pod, whose
	// decoding would parse it.
	badQuantity *inject.Error
}

// The wire forms of the two decodes.
type (
	typedReview struct {
		APIVersion string        `json:"apiVersion"`
		Kind       string        `json:"kind"`
		Request    *typedRequest `json:"request"`
	}
	typedRequest struct {
		requestMeta
		Object *corev1.Pod `json:"object"`
	}
	rawReview struct {
		APIVersion string      `json:"apiVersion"`
		Kind       string      `json:"kind"`
		Request    *rawRequest `json:"request"`
	}
	rawRequest struct {
		requestMeta
		Object rawObject `json:"object"`
	}
)

// rawObject is request.object, undecoded. Unlike json.RawMessage it does not
// copy: it points into the request body, which outlives the request's
// handling (the body buffer returns to its pool only after the answer is
// written).
type rawObject []byte

// UnmarshalJSON keeps data (already validated by the decoder) without a copy.
func (r *rawObject) UnmarshalJSON(data []byte) error {
	*r = data
	return nil
}

// objectPod returns request.object as a Pod, or a message naming what is
// wrong with it (for a deny with code 400).
func (rev *reviewIn) objectPod() (*corev1.Pod, string) {
	if rev.typed {
		if rev.pod == nil {
			return nil, "request.object is missing or null: a pod CREATE must carry the pod"
		}
		return rev.pod, ""
	}
	if len(rev.raw) == 0 || string(rev.raw) == "null" {
		return nil, "request.object is missing or null: a pod CREATE must carry the pod"
	}
	if rev.badQuantity != nil {
		return nil, "request.object." + rev.badQuantity.Error()
	}
	var pod corev1.Pod
	if err := decodeJSON(rev.raw, &pod); err != nil {
		return nil, "request.object is not a Pod: " + describeDecodeError(rev.raw, &corev1.Pod{}, err, "request.object")
	}
	return &pod, ""
}

// reviewOut is the answer: the same apiVersion as the request.
type reviewOut struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Response   responseOut `json:"response"`
}

type responseOut struct {
	UID       string     `json:"uid"`
	Allowed   bool       `json:"allowed"`
	Status    *statusOut `json:"status,omitempty"`
	PatchType string     `json:"patchType,omitempty"`
	Patch     []byte     `json:"patch,omitempty"` // base64 on the wire
	Warnings  []string   `json:"warnings,omitempty"`
}

// statusOut has the JSON shape of a metav1.Status (the apiserver decodes it
// as one; kubectl prints its message).
type statusOut struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`
	Status     string `json:"status"`
	Message    string `json:"message"`
	Reason     string `json:"reason,omitempty"`
	Code       int32  `json:"code"`
}

// badRequest is a malformed HTTP request: answered with a non-200 status and
// a JSON Status body.
type badRequest struct {
	code   int
	reason string // the metric reason
	msg    string
}

func (e *badRequest) Error() string { return e.msg }

func badRequestf(format string, args ...any) *badRequest {
	return &badRequest{code: 400, reason: string(ReasonBadRequest), msg: fmt.Sprintf(format, args...)}
}

// decodeReview decodes and checks the envelope: a JSON object with a known
// apiVersion, kind AdmissionReview and a request with a uid. Anything else is
// a badRequest (HTTP 400): the apiserver never sends it.
func decodeReview(body []byte) (*reviewIn, error) {
	if len(body) == 0 {
		return nil, badRequestf("request body is empty: want an %s JSON document", reviewKind)
	}
	var rev reviewIn
	var gen typedReview
	var typed *typedReview
	var badQuantity *inject.Error
	ok := false
	if decodeGenerated(body, &gen) == nil {
		typed, ok = &gen, true
	} else {
		// A quantity failing the grammar must not reach a library's Pod
		// decode (which parses it): the object is then kept raw and
		// denied. The generated decoder leaves every quantity that could
		// be expensive to this check.
		if badQuantity = inject.CheckQuantities(body, "request", "object"); badQuantity == nil {
			typed, ok = decodeTyped(body)
		}
	}
	if ok {
		rev = reviewIn{APIVersion: typed.APIVersion, Kind: typed.Kind, typed: true}
		if typed.Request != nil {
			rev.Request, rev.pod = &typed.Request.requestMeta, typed.Request.Object
		}
	} else {
		var raw rawReview
		if err := decodeJSON(body, &raw); err != nil {
			return nil, badRequestf("request body is not an %s JSON document: %s", reviewKind, describeDecodeError(body, &rawReview{}, err, ""))
		}
		rev = reviewIn{APIVersion: raw.APIVersion, Kind: raw.Kind}
		if raw.Request != nil {
			rev.Request, rev.raw = &raw.Request.requestMeta, raw.Request.Object
		}
		rev.badQuantity = badQuantity
	}
	switch rev.APIVersion {
	case admissionV1, admissionV1beta1:
	default:
		return nil, badRequestf("apiVersion %s: want %s or %s", quote(rev.APIVersion), admissionV1, admissionV1beta1)
	}
	if rev.Kind != reviewKind {
		return nil, badRequestf("kind %s: want %s", quote(rev.Kind), reviewKind)
	}
	if rev.Request == nil {
		return nil, badRequestf("request is missing or null: an %s to a webhook must carry one", reviewKind)
	}
	if rev.Request.UID == "" {
		return nil, badRequestf("request.uid is missing or empty: the answer must echo it")
	}
	return &rev, nil
}

// describeJSONError turns an encoding/json error into a message naming the
// field (prefixed with prefix) and what was expected.
func describeJSONError(err error, prefix string) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if prefix != "" {
			if field == "" {
				field = prefix
			} else {
				field = prefix + "." + field
			}
		}
		if field == "" {
			return fmt.Sprintf("got a JSON %s, want %s", te.Value, jsonWant(te.Type))
		}
		return fmt.Sprintf("%s: got a JSON %s, want %s", field, te.Value, jsonWant(te.Type))
	case errors.As(err, &se):
		return fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if prefix != "" {
		return prefix + ": " + msg
	}
	return msg
}

// jsonWant says what JSON a Go type decodes from, in the user's terms.
func jsonWant(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// quote quotes a value from the request for a message: escaped, bounded.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// statusReason is the metav1.StatusReason for a code.
func statusReason(code int32) string {
	switch code {
	case 400:
		return "BadRequest"
	case 403:
		return "Forbidden"
	case 422:
		return "Invalid"
	case 500:
		return "InternalError"
	}
	return ""
}

// httpErrorBody is the JSON body of a non-200 answer.
func httpErrorBody(code int, msg string) []byte {
	b, err := json.Marshal(statusOut{Kind: "Status", APIVersion: "v1", Status: "Failure", Message: sanitize(msg, 4096), Reason: httpStatusReason(code), Code: int32(code)})
	if err != nil { // plain strings and ints only
		return []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}`)
	}
	return append(b, '\n')
}

func httpStatusReason(code int) string {
	switch code {
	case 413:
		return "RequestEntityTooLarge"
	case 415:
		return "UnsupportedMediaType"
	case 429:
		return "TooManyRequests"
	case 408:
		return "Timeout"
	}
	return statusReason(int32(code))
}

// limitWarnings makes the warnings of one answer: at most MaxWarnings, each
// plain text of at most MaxWarningLength characters. When there are more,
// the last slot says how many were left out.
func limitWarnings(ws []string) []string {
	if len(ws) == 0 {
		return nil
	}
	n := len(ws)
	keep := n
	if n > MaxWarnings {
		keep = MaxWarnings - 1
	}
	out := make([]string, 0, min(n, MaxWarnings))
	for _, w := range ws[:keep] {
		if s := sanitize(w, MaxWarningLength); s != "" {
			out = append(out, s)
		}
	}
	if n > keep {
		out = append(out, fmt.Sprintf("%d more warnings not shown; run sidecar-injector explain for all", n-keep))
	}
	return out
}

// sanitize makes s plain text of at most max characters: invalid UTF-8
// becomes U+FFFD, control and format characters (newlines, escapes,
// bidirectional overrides) become spaces, runs of spaces collapse, and a cut
// text ends in "...".
func sanitize(s string, max int) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || (c == ' ' && i+1 < len(s) && s[i+1] == ' ') {
			clean = false
			break
		}
	}
	if clean && len(s) <= max {
		return strings.TrimSpace(s)
	}
	var b strings.Builder
	b.Grow(min(len(s), max*4))
	n := 0
	space := false
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if r == utf8.RuneError && size <= 1 {
			r = unicode.ReplacementChar
		}
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || unicode.IsSpace(r) {
			r = ' '
		}
		if r == ' ' {
			if space || n == 0 {
				continue
			}
			space = true
		} else {
			space = false
		}
		if n == max {
			// Cut: the last three characters become "...".
			out := []rune(strings.TrimRight(b.String(), " "))
			if len(out) > max-3 {
				out = out[:max-3]
			}
			return strings.TrimRight(string(out), " ") + "..."
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimRight(b.String(), " ")
}
