package inject

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Document is one object of a manifest stream, as generic JSON (maps,
// slices, json.Number...), so that fields unknown to our k8s.io/api are kept
// exactly.
type Document struct {
	Index  int // 1-based position in the stream
	Object any
}

// ReadDocuments reads a manifest stream: YAML documents separated by "---",
// or a stream of JSON values. Empty documents are dropped (they keep their
// place in the numbering).
func ReadDocuments(data []byte) ([]Document, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return readJSONStream(trimmed)
	}
	var docs []Document
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 1; ; i++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: not valid YAML: %w", i, err)
		}
		obj, err := decodeGeneric(js)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if obj == nil {
			continue
		}
		docs = append(docs, Document{Index: i, Object: obj})
	}
}

func readJSONStream(data []byte) ([]Document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var docs []Document
	for i := 1; ; i++ {
		var obj any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: not valid JSON: %w", i, err)
		}
		if obj != nil {
			docs = append(docs, Document{Index: i, Object: obj})
		}
	}
}

func decodeGeneric(js []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var obj any
	if err := dec.Decode(&obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// WriteDocuments writes docs as YAML documents separated by "---", or as
// JSON values one after another (format "json").
func WriteDocuments(w io.Writer, docs []Document, format string) error {
	var buf bytes.Buffer
	for i, d := range docs {
		switch format {
		case "json":
			b, err := json.MarshalIndent(d.Object, "", "  ")
			if err != nil {
				return fmt.Errorf("document %d: %w", d.Index, err)
			}
			buf.Write(b)
			buf.WriteByte('\n')
		case "yaml", "":
			b, err := yaml.Marshal(d.Object)
			if err != nil {
				return fmt.Errorf("document %d: %w", d.Index, err)
			}
			if i > 0 {
				buf.WriteString("---\n")
			}
			buf.Write(b)
		default:
			return fmt.Errorf("output format %q: want yaml or json", format)
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Workload names one pod or pod template found in a document.
type Workload struct {
	Document  int    `json:"document"`
	Item      *int   `json:"item,omitempty"` // index in a List's items
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (w Workload) String() string {
	s := fmt.Sprintf("document %d", w.Document)
	if w.Item != nil {
		s += fmt.Sprintf(" item %d", *w.Item)
	}
	name := w.Name
	if w.Namespace != "" {
		name = w.Namespace + "/" + name
	}
	return s + fmt.Sprintf(" (%s %s)", w.Kind, name)
}

// templatePaths says where each workload kind keeps its pod template.
var templatePaths = map[string][]string{
	"Pod":                   nil,
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// PodFunc is run on each pod found; the patch it returns is applied to the
// pod (template) in the document.
type PodFunc func(w Workload, pod *corev1.Pod) (Patch, error)

// EachPod runs fn on every pod and pod template of the document (the items
// of a List too) and applies the patches it returns. Other objects pass
// through unchanged. Errors name the document, the object and the field.
func EachPod(doc *Document, fn PodFunc) error {
	obj, ok := doc.Object.(map[string]any)
	if !ok {
		return fmt.Errorf("document %d: not an object", doc.Index)
	}
	kind, _ := obj["kind"].(string)
	if items, isList := obj["items"].([]any); isList && strings.HasSuffix(kind, "List") {
		for i, it := range items {
			item, ok := it.(map[string]any)
			if !ok {
				return fmt.Errorf("document %d item %d: not an object", doc.Index, i)
			}
			if err := eachPodIn(item, Workload{Document: doc.Index, Item: ptr(i)}, fn); err != nil {
				return err
			}
		}
		return nil
	}
	return eachPodIn(obj, Workload{Document: doc.Index}, fn)
}

func eachPodIn(obj map[string]any, w Workload, fn PodFunc) error {
	w.Kind, _ = obj["kind"].(string)
	path, isWorkload := templatePaths[w.Kind]
	if !isWorkload {
		return nil
	}
	if md, ok := obj["metadata"].(map[string]any); ok {
		w.Name, _ = md["name"].(string)
		w.Namespace, _ = md["namespace"].(string)
		if w.Name == "" {
			if gn, _ := md["generateName"].(string); gn != "" {
				w.Name = gn + "*"
			}
		}
	}
	parent, key, tmpl, err := walk(obj, path)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	// A pod template may leave metadata out; the patch paths need it. An
	// empty metadata left after the patch is dropped again.
	if _, ok := tmpl["metadata"]; !ok {
		tmpl["metadata"] = map[string]any{}
	}
	raw, err := json.Marshal(tmpl)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	pod, err := DecodePod(raw)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", w, fieldOf(path), err)
	}
	if pod.Namespace == "" {
		pod.Namespace = w.Namespace
	}
	patch, err := fn(w, pod)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	if len(patch) == 0 {
		if md, ok := tmpl["metadata"].(map[string]any); ok && len(md) == 0 && parent != nil {
			delete(tmpl, "metadata")
		}
		return nil
	}
	patched, err := ApplyPatch(raw, patch)
	if err != nil {
		return fmt.Errorf("%s: apply patch: %w", w, err)
	}
	decoded, err := decodeGeneric(patched)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	newTmpl := decoded.(map[string]any)
	if md, ok := newTmpl["metadata"].(map[string]any); ok && len(md) == 0 && parent != nil {
		delete(newTmpl, "metadata")
	}
	if parent == nil {
		clear(obj)
		for k, v := range newTmpl {
			obj[k] = v
		}
		return nil
	}
	parent[key] = newTmpl
	return nil
}

// walk follows path from obj; it returns the last map, key and value.
func walk(obj map[string]any, path []string) (parent map[string]any, key string, value map[string]any, err error) {
	value = obj
	for i, k := range path {
		next, ok := value[k].(map[string]any)
		if !ok {
			return nil, "", nil, fmt.Errorf("%s: missing or not an object", fieldOf(path[:i+1]))
		}
		parent, key, value = value, k, next
	}
	return parent, key, value, nil
}

func fieldOf(path []string) string {
	if len(path) == 0 {
		return "pod"
	}
	return strings.Join(path, ".")
}

// ApplyPatch applies a patch to a JSON document (RFC 6902).
func ApplyPatch(doc []byte, patch Patch) ([]byte, error) {
	pb, err := patch.JSON()
	if err != nil {
		return nil, err
	}
	p, err := jsonpatch.DecodePatch(pb)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}

// Explanation is what explain says about one pod: where it is, and the
// engine's Result (decision, reason, message, warnings, ports, patch).
type Explanation struct {
	Workload
	Result
}

// Explain runs the engine on every pod and pod template of a manifest stream
// (YAML or JSON, one or more documents, Lists) and reports each decision.
// It changes nothing. Objects without a namespace take ov.Namespace.
func Explain(data []byte, cfg Config, ov Overrides) ([]Explanation, error) {
	in, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return in.Explain(data, ov)
}

// Explain is the package-level Explain with a prepared Injector.
func (in *Injector) Explain(data []byte, ov Overrides) ([]Explanation, error) {
	docs, err := ReadDocuments(data)
	if err != nil {
		return nil, err
	}
	out := []Explanation{}
	for i := range docs {
		err := EachPod(&docs[i], func(w Workload, pod *corev1.Pod) (Patch, error) {
			o := ov
			if pod.Namespace != "" {
				o.Namespace = pod.Namespace
			}
			res, _ := in.Inject(pod, o) // a deny is a result to explain, not a failure
			res.Pod = nil
			out = append(out, Explanation{Workload: w, Result: res})
			return nil, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DecodePod decodes a pod the way the apiserver does: field names match
// case-sensitively (encoding/json would take "Spec" or "speC" for "spec",
// and the patch paths, which are case-sensitive, would then miss), and
// unknown fields are ignored here and kept in the raw object.
func DecodePod(raw []byte) (*corev1.Pod, error) {
	if err := CheckQuantities(raw); err != nil {
		return nil, err
	}
	var pod corev1.Pod
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &pod); err != nil {
		return nil, err
	}
	return &pod, nil
}
