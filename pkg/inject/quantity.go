package inject

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Quantities are read with resource.ParseQuantity, whose slow path does
// big-number arithmetic: "1E-100000000" runs for a minute and takes hundreds
// of megabytes. Every quantity a pod carries, in a setting or in its own
// resources, first passes checkQuantity, a strict grammar bounding the
// length and the exponent; only then is it parsed. The bounds admit every
// quantity Kubernetes itself can hold (at most 2^63 of the base unit, nano
// precision).
const (
	// maxQuantityLen bounds a quantity's text ("9223372036854775807Ei" is 21).
	maxQuantityLen = 32
	// maxQuantityDigits bounds the digits of the number (before the suffix).
	maxQuantityDigits = 24
	// maxQuantityExponent bounds a decimal exponent ("1e18", "5E-3").
	maxQuantityExponent = 30
)

// quantityGrammar says in a denial what checkQuantity accepts.
var quantityGrammar = fmt.Sprintf("a number of at most %d digits with an optional suffix (m, k, M, G, Ki, Mi, Gi, ...) or a decimal exponent within ±%d, at most %d characters",
	maxQuantityDigits, maxQuantityExponent, maxQuantityLen)

// checkQuantity checks s against the quantity grammar of Kubernetes,
// bounded:
//
//	quantity ::= [+-] digits [ "." digits ] [ suffix ]  (or [+-] "." digits ...)
//	suffix   ::= n u m k M G T P E | Ki Mi Gi Ti Pi Ei | (e|E) [+-] digits
//
// It never allocates and runs in time linear in min(len(s), maxQuantityLen).
func checkQuantity(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > maxQuantityLen {
		return fmt.Errorf("%d characters; at most %d", len(s), maxQuantityLen)
	}
	i := 0
	if s[0] == '+' || s[0] == '-' {
		i++
	}
	digits := 0
	for i < len(s) && isDigit(s[i]) {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return fmt.Errorf("no digits")
	}
	if digits > maxQuantityDigits {
		return fmt.Errorf("%d digits; at most %d", digits, maxQuantityDigits)
	}
	suffix := s[i:]
	switch suffix {
	case "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei":
		return nil
	}
	if suffix[0] != 'e' && suffix[0] != 'E' {
		return fmt.Errorf("unknown suffix %q", suffix)
	}
	exp := suffix[1:]
	if exp != "" && (exp[0] == '+' || exp[0] == '-') {
		exp = exp[1:]
	}
	if exp == "" || len(exp) > 2 {
		return fmt.Errorf("exponent %q: want -%d to %d", suffix[1:], maxQuantityExponent, maxQuantityExponent)
	}
	for j := 0; j < len(exp); j++ {
		if !isDigit(exp[j]) {
			return fmt.Errorf("exponent %q: want -%d to %d", suffix[1:], maxQuantityExponent, maxQuantityExponent)
		}
	}
	if n, _ := strconv.Atoi(exp); n > maxQuantityExponent {
		return fmt.Errorf("exponent %q: want -%d to %d", suffix[1:], maxQuantityExponent, maxQuantityExponent)
	}
	return nil
}

// checkQuantityJSON checks a quantity as its JSON value, raw, comes to
// resource.Quantity's UnmarshalJSON: null is no quantity; otherwise the text
// inside the quotes, if any, trimmed, must pass checkQuantity. It returns
// the text it checked.
func checkQuantityJSON(raw []byte) (string, error) {
	v := bytes.TrimSpace(raw)
	if string(v) == "null" {
		return "", nil
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	s := string(bytes.TrimSpace(v))
	return s, checkQuantity(s)
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func isASCIILetter(b byte) bool { return b|0x20 >= 'a' && b|0x20 <= 'z' }

// parseBoundedQuantity checks the grammar, parses, and checks the result
// is positive and at most limit (when set). The error says what was wrong
// and, for a value over the limit, names the config field holding it.
func parseBoundedQuantity(value, want string, limit *resource.Quantity, limitField string) (*resource.Quantity, error) {
	if err := checkQuantity(value); err != nil {
		return nil, fmt.Errorf("%q: %v; want %s (%s)", truncate(value), err, want, quantityGrammar)
	}
	q, err := resource.ParseQuantity(value)
	if err != nil || q.Sign() <= 0 {
		return nil, fmt.Errorf("%q: want %s", value, want)
	}
	if limit != nil && q.Cmp(*limit) > 0 {
		return nil, fmt.Errorf("%q is over the limit %s=%s set by the cluster admin; ask for at most %s", value, limitField, limit.String(), limit.String())
	}
	return &q, nil
}

// CheckQuantities checks every resource quantity of a pod, in JSON, against
// the quantity grammar before anything decodes it (decoding a
// resource.Quantity parses it). path leads from the document's root to the
// pod ("request", "object" in an AdmissionReview; none for a bare pod). A
// quick scan of the bytes finds whether any string or number in the
// document could be an expensive quantity; only then are the document's
// tokens walked, every one of them: a key given twice is checked both
// times, as a decoder that reads both (the last one wins) parses both. A
// candidate found in a quantity's place is checked against the grammar.
// It returns nil when the document is not JSON (the real decode reports
// that). The error's field is the quantity's path from the pod.
func CheckQuantities(data []byte, path ...string) *Error {
	if !hasQuantityCandidate(data) {
		return nil
	}
	dec := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	for {
		kind, n := dec.StackIndex(dec.StackDepth())
		if kind == '{' && n%2 == 0 { // an object's next token is a name
			if _, err := dec.ReadToken(); err != nil {
				return nil
			}
			continue
		}
		switch dec.PeekKind() {
		case '"', '0':
		case 0:
			return nil // the end, or not JSON
		default:
			if _, err := dec.ReadToken(); err != nil {
				return nil
			}
			continue
		}
		raw, err := dec.ReadValue()
		if err != nil {
			return nil
		}
		// Only an expensive candidate needs its place found: any other
		// quantity fails fast in the decoder, which says why.
		if !ExpensiveQuantityJSON(raw) {
			continue
		}
		field, ok := quantityField(dec.StackPointer(), path)
		if !ok {
			continue
		}
		if v, e := checkQuantityJSON(raw); e != nil {
			return denyf(ReasonInvalidPod, field, "%q: %v; want %s", truncate(v), e, quantityGrammar)
		}
	}
}

// quantityPlaces are the places of a pod where resource.Quantity values
// live, as JSON Pointer segments: "#" is an array index, "*" any key. They
// are found by walking corev1.Pod's Go type, once, when a document first
// holds a candidate, so a field a newer k8s.io/api adds (the divisor of a
// downward-API resource reference, a status's allocated resources) is
// never missed.
var quantityPlaces = sync.OnceValue(func() [][]string {
	quantity := reflect.TypeFor[resource.Quantity]()
	var places [][]string
	var walk func(reflect.Type, []string)
	walk = func(typ reflect.Type, at []string) {
		if len(at) > 16 { // corev1.Pod's types do not recurse; bound it anyway
			return
		}
		switch typ.Kind() {
		case reflect.Pointer:
			walk(typ.Elem(), at)
		case reflect.Slice:
			walk(typ.Elem(), append(slices.Clip(at), "#"))
		case reflect.Map:
			walk(typ.Elem(), append(slices.Clip(at), "*"))
		case reflect.Struct:
			if typ == quantity {
				places = append(places, at)
				return
			}
			for i := range typ.NumField() {
				f := typ.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				switch {
				case !f.IsExported() || name == "-":
				case f.Anonymous && name == "":
					walk(f.Type, at) // inline, like metav1.TypeMeta
				default:
					walk(f.Type, append(slices.Clip(at), name))
				}
			}
		}
	}
	walk(reflect.TypeFor[corev1.Pod](), nil)
	return places
})

// quantityField says whether the value at ptr (a JSON Pointer from the
// document's root) is a quantity of the pod at path, and names its field
// from the pod ("spec.containers[0].resources.limits.cpu").
func quantityField(ptr jsontext.Pointer, path []string) (string, bool) {
	var segs []string
	for tok := range ptr.Tokens() {
		segs = append(segs, tok)
	}
	if len(segs) < len(path) || !slices.Equal(segs[:len(path)], path) {
		return "", false
	}
	segs = segs[len(path):]
	for _, place := range quantityPlaces() {
		if len(place) != len(segs) || !matchPlace(place, segs) {
			continue
		}
		var field strings.Builder
		for i, seg := range segs {
			switch {
			case place[i] == "#":
				field.WriteString("[" + seg + "]")
			case i > 0:
				field.WriteString("." + seg)
			default:
				field.WriteString(seg)
			}
		}
		return field.String(), true
	}
	return "", false
}

func matchPlace(place, segs []string) bool {
	for i, p := range place {
		switch p {
		case "*":
		case "#":
			if segs[i] == "" || strings.TrimLeft(segs[i], "0123456789") != "" {
				return false
			}
		default:
			if segs[i] != p {
				return false
			}
		}
	}
	return true
}

// hasQuantityCandidate reports whether data holds a JSON string or number
// token that could decode to an expensive quantity (quantityCandidate):
// the only tokens worth a second decode. One pass, no allocation.
func hasQuantityCandidate(data []byte) bool {
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '"':
			// Strings are most of a review: skip to the closing quote with
			// IndexByte. A string with an escape is a candidate (its quote
			// may be escaped too, so it is not skipped further); one that
			// starts with a letter never is.
			tok := data[i+1:]
			end := bytes.IndexByte(tok, '"')
			if end < 0 {
				end = len(tok)
			}
			tok = tok[:end]
			if bytes.IndexByte(tok, '\\') >= 0 {
				return true
			}
			if len(tok) > 0 && !isASCIILetter(tok[0]) && quantityCandidate(tok) {
				return true
			}
			i += end + 1
		case c == '-' || isDigit(c):
			j := i
			for j < len(data) && (isDigit(data[j]) || data[j] == '.' || data[j] == 'e' || data[j] == 'E' || data[j] == '+' || data[j] == '-') {
				j++
			}
			if quantityCandidate(data[i:j]) {
				return true
			}
			i = j - 1
		}
	}
	return false
}

// ExpensiveQuantityJSON says whether raw, a JSON value in a quantity's
// place, could be expensive to parse (quantityCandidate): a decoder that
// parses quantities asks it first, and leaves what it flags to
// CheckQuantities, which finds the field and checks the grammar.
func ExpensiveQuantityJSON(raw []byte) bool {
	return quantityCandidate(bytes.Trim(raw, `"`))
}

// quantityCandidate says whether a token (a JSON string's raw bytes, or a
// number) could be an expensive quantity: a number with an exponent, or a
// long one (more than maxQuantityLen bytes) with a suffix ParseQuantity
// knows. Anything else it rejects before any big-number work, so request
// and pod UIDs, digests and versions that start with a digit and hold an
// "e" (most reviews carry one) cost no second decode. A token with an
// escape may decode to anything: it is a candidate.
func quantityCandidate(tok []byte) bool {
	if bytes.IndexByte(tok, '\\') >= 0 {
		return true
	}
	// Quantity decoding trims white space, Unicode's included: skip it,
	// and any non-ASCII byte, at both ends, to be sure.
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c >= 0x80 }
	for len(tok) > 0 && space(tok[0]) {
		tok = tok[1:]
	}
	for len(tok) > 0 && space(tok[len(tok)-1]) {
		tok = tok[:len(tok)-1]
	}
	i := 0
	if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
		i++
	}
	digits := 0
	for ; i < len(tok) && (isDigit(tok[i]) || tok[i] == '.'); i++ {
		if isDigit(tok[i]) {
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	suffix := tok[i:]
	if len(suffix) >= 2 && (suffix[0] == 'e' || suffix[0] == 'E') {
		exp := suffix[1:]
		if exp[0] == '+' || exp[0] == '-' {
			exp = exp[1:]
		}
		return len(exp) > 0 && !bytes.ContainsFunc(exp, func(r rune) bool { return r < '0' || r > '9' })
	}
	if len(tok) <= maxQuantityLen {
		return false
	}
	switch string(suffix) {
	case "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E":
		return true
	}
	return false
}
