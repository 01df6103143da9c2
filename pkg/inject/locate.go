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
// parse: containers' (and init and ephemeral containers') requests and
// limits, the pod's resources and overhead.
func badQuantity(pod map[string]any) (path, value string, err error, found bool) {
	spec, _ := pod["spec"].(map[string]any)
	if spec == nil {
		return "", "", nil, false
	}
	checkList := func(at string, v any) (string, string, error, bool) {
		list, _ := v.(map[string]any)
		for _, name := range sortedKeys(list) {
			q := list[name]
			var s string
			switch x := q.(type) {
			case string:
				s = x
			case json.Number:
				s = x.String()
			default:
				return at + "." + name, fmt.Sprint(q), fmt.Errorf("a %s; want a quantity such as 100m or 128Mi", jsonKind(q)), true
			}
			if _, err := resource.ParseQuantity(s); err != nil {
				return at + "." + name, s, fmt.Errorf("%w; write a quantity such as 100m, 0.5 or 128Mi", err), true
			}
		}
		return "", "", nil, false
	}
	checkRes := func(at string, v any) (string, string, error, bool) {
		res, _ := v.(map[string]any)
		for _, k := range []string{"limits", "requests"} {
			if p, val, e, ok := checkList(at+"."+k, res[k]); ok {
				return p, val, e, true
			}
		}
		return "", "", nil, false
	}
	for _, list := range []string{"initContainers", "containers", "ephemeralContainers"} {
		cs, _ := spec[list].([]any)
		for i, c := range cs {
			cm, _ := c.(map[string]any)
			if p, v, e, ok := checkRes(fmt.Sprintf("spec.%s[%d].resources", list, i), cm["resources"]); ok {
				return p, v, e, true
			}
		}
	}
	if p, v, e, ok := checkRes("spec.resources", spec["resources"]); ok {
		return p, v, e, true
	}
	if p, v, e, ok := checkList("spec.overhead", spec["overhead"]); ok {
		return p, v, e, true
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
