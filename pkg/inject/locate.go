package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// locateDecodeError turns an error of decoding a raw pod (template) into
// one naming the field path, with indices, and the value: the decoder's own
// messages say neither for quantities ("quantities must match ...") and
// only a path without indices for type mismatches. tmplPath is where the
// pod template sits in its object.
func locateDecodeError(tmpl map[string]any, tmplPath []string, err error) error {
	prefix := ""
	if len(tmplPath) > 0 {
		prefix = fieldOf(tmplPath) + "."
	}
	if path, value, qerr, ok := badQuantity(tmpl); ok {
		return fmt.Errorf("%s%s: %q: %v", prefix, path, value, qerr)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		if path, value, ok := findTyped(tmpl, strings.Split(te.Field, "."), te.Value, ""); ok {
			return fmt.Errorf("%s%s: %s: want %s", prefix, path, value, describeGoType(te.Type.String()))
		}
		return fmt.Errorf("%s%s: got a JSON %s, want %s", prefix, te.Field, te.Value, describeGoType(te.Type.String()))
	}
	return fmt.Errorf("%s: %w", fieldOf(tmplPath), err)
}

// badQuantity finds the first resource quantity of the pod that does not
// parse, at the places CheckQuantities checks (quantityPlaces).
func badQuantity(pod map[string]any) (path, value string, err error, found bool) {
	for _, place := range quantityPlaces() {
		if path, value, err, found = badQuantityAt(pod, place, ""); found {
			return path, value, err, true
		}
	}
	return "", "", nil, false
}

// badQuantityAt follows place (quantityPlaces' segments) from v, at the
// field path at, to the quantities there, in order (map keys sorted), and
// returns the first that does not parse. null is no quantity.
func badQuantityAt(v any, place []string, at string) (path, value string, err error, found bool) {
	if len(place) == 0 {
		var s string
		switch x := v.(type) {
		case nil:
			return "", "", nil, false
		case string:
			s = x
		case json.Number:
			s = x.String()
		default:
			return at, fmt.Sprint(v), fmt.Errorf("a %s; want a quantity such as 100m or 128Mi", jsonKind(v)), true
		}
		if _, err := resource.ParseQuantity(s); err != nil {
			return at, s, fmt.Errorf("%w; write a quantity such as 100m, 0.5 or 128Mi", err), true
		}
		return "", "", nil, false
	}
	child := func(name string) string {
		if at == "" {
			return name
		}
		return at + "." + name
	}
	switch seg := place[0]; seg {
	case "#":
		list, _ := v.([]any)
		for i, it := range list {
			if path, value, err, found = badQuantityAt(it, place[1:], fmt.Sprintf("%s[%d]", at, i)); found {
				return path, value, err, true
			}
		}
	case "*":
		m, _ := v.(map[string]any)
		for _, k := range sortedKeys(m) {
			if path, value, err, found = badQuantityAt(m[k], place[1:], child(k)); found {
				return path, value, err, true
			}
		}
	default:
		m, _ := v.(map[string]any)
		if next, ok := m[seg]; ok {
			return badQuantityAt(next, place[1:], child(seg))
		}
	}
	return "", "", nil, false
}

// findTyped follows a dotted field path through the generic object,
// expanding arrays, to the first value of JSON type want; it returns the
// path with indices and the value, shortened for a message.
func findTyped(v any, path []string, want, at string) (string, string, bool) {
	if arr, ok := v.([]any); ok {
		for i, it := range arr {
			if p, val, ok := findTyped(it, path, want, fmt.Sprintf("%s[%d]", at, i)); ok {
				return p, val, true
			}
		}
		return "", "", false
	}
	if len(path) == 0 {
		if jsonKindOf(v) == want {
			b, _ := json.Marshal(v)
			return at, truncate(string(b)), true
		}
		return "", "", false
	}
	m, ok := v.(map[string]any)
	if !ok {
		return "", "", false
	}
	next, ok := m[path[0]]
	if !ok {
		return "", "", false
	}
	child := path[0]
	if at != "" {
		child = at + "." + path[0]
	}
	return findTyped(next, path[1:], want, child)
}

// jsonKindOf names a generic value's type the way encoding/json's
// UnmarshalTypeError.Value does.
func jsonKindOf(v any) string {
	switch x := v.(type) {
	case json.Number:
		if _, err := strconv.ParseInt(x.String(), 10, 64); err == nil {
			return "number"
		}
		return "number " + x.String()
	}
	return jsonKind(v)
}

func describeGoType(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "string":
		return "a string"
	case t == "bool":
		return "true or false"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "an object"
	}
	return "a " + t
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
