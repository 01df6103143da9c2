package inject

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	yamlv3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Document is one object of a manifest stream, as generic JSON (maps,
// slices, json.Number...), so that fields unknown to our k8s.io/api are kept
// exactly.
type Document struct {
	Source string // the file it came from ("" for one unnamed stream, "-" for standard input)
	Index  int    // 1-based position in the stream
	Object any
}

// ReadDocuments reads a manifest stream: YAML documents separated by "---",
// JSON values one after another, or both mixed. Each document is read as
// JSON when it parses as JSON and as YAML otherwise, so flow-style YAML
// (which may start with "{") is read as YAML. Empty documents are dropped
// (they keep their place in the numbering).
func ReadDocuments(data []byte) ([]Document, error) {
	return ReadDocumentsFrom("", data)
}

// ReadDocumentsFrom is ReadDocuments for a named source; errors and the
// documents carry the name.
func ReadDocumentsFrom(source string, data []byte) ([]Document, error) {
	var docs []Document
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	index := 0
	where := func(i int) string {
		if source == "" {
			return fmt.Sprintf("document %d", i)
		}
		return fmt.Sprintf("%s: document %d", source, i)
	}
	for {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where(index+1), err)
		}
		// A chunk holding only JSON values (one or a stream of them) is
		// read as JSON; anything else is YAML.
		objs, n, jsonErr := jsonValues(raw)
		if jsonErr == nil || n > 0 {
			for _, obj := range objs {
				index++
				if obj != nil {
					docs = append(docs, Document{Source: source, Index: index, Object: obj})
				}
			}
			if jsonErr != nil {
				// JSON values, then something that is not JSON.
				return nil, fmt.Errorf("%s: not valid JSON after %d JSON values (separate YAML documents with a --- line): %w", where(index+1), n, jsonErr)
			}
			continue
		}
		index++
		js, err := yamlToJSON(raw)
		if err != nil {
			msg := "not valid YAML"
			if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
				msg = "neither valid JSON nor valid YAML"
			}
			return nil, fmt.Errorf("%s: %s: %w", where(index), msg, err)
		}
		obj, err := decodeGeneric(js)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where(index), err)
		}
		if obj == nil {
			continue
		}
		docs = append(docs, Document{Source: source, Index: index, Object: obj})
	}
}

// jsonValues decodes raw as a stream of JSON values. It returns the values
// decoded and, when raw is not all JSON, the error; a document that does not
// start with a JSON value (n == 0) is YAML (or invalid).
func jsonValues(raw []byte) (objs []any, n int, err error) {
	t := bytes.TrimLeft(raw, " \t\r\n")
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') {
		return nil, 0, errors.New("not JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(t))
	dec.UseNumber()
	for {
		var obj any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return objs, len(objs), nil
		}
		if err != nil {
			return objs, len(objs), err
		}
		objs = append(objs, obj)
	}
}

// yamlToJSON converts one YAML document. A flow-style document ("{a: 1}")
// followed by more content is an error: the converter alone would drop the
// rest silently.
func yamlToJSON(raw []byte) ([]byte, error) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		dec := yamlv3.NewDecoder(bytes.NewReader(raw))
		var first, rest yamlv3.Node
		if err := dec.Decode(&first); err != nil {
			return nil, err
		}
		if err := dec.Decode(&rest); !errors.Is(err, io.EOF) {
			if err == nil {
				err = errors.New("content after the end of the document")
			}
			return nil, fmt.Errorf("after the flow-style object: %w", err)
		}
	}
	return yaml.YAMLToJSON(raw)
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
	Source    string `json:"source,omitempty"` // the file, when several were read
	Document  int    `json:"document"`
	Item      *int   `json:"item,omitempty"`   // index in a List's items
	Nested    []int  `json:"nested,omitempty"` // indices in Lists inside that item, outermost first
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (w Workload) String() string {
	name := w.Name
	if w.Namespace != "" {
		name = w.Namespace + "/" + name
	}
	return w.position() + fmt.Sprintf(" (%s %s)", w.Kind, name)
}

// position is where the object is: file, document, List item.
func (w Workload) position() string {
	s := docName(w.Source, w.Document)
	if w.Item != nil {
		s += fmt.Sprintf(" item %d", *w.Item)
		for _, n := range w.Nested {
			s += fmt.Sprintf(".%d", n)
		}
	}
	return s
}

// Ref is the kubectl-style name of the object: deployment/shop, pod/web.
func (w Workload) Ref() string {
	return strings.ToLower(w.Kind) + "/" + w.Name
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

// TemplatePath returns where kind keeps its pod template (nil for a Pod),
// and whether kind has one at all.
func TemplatePath(kind string) ([]string, bool) {
	p, ok := templatePaths[kind]
	return p, ok
}

// PodFunc is run on each pod found; the patch it returns is applied to the
// pod (template) in the document.
type PodFunc func(w Workload, pod *corev1.Pod) (Patch, error)

// maxListDepth bounds Lists inside Lists.
const maxListDepth = 32

// EachPod runs fn on every pod and pod template of the document (the items
// of Lists too, at any depth) and applies the patches it returns. Other
// objects, and null items of a List, pass through unchanged. Errors name
// the document, the object, the field path and the value.
func EachPod(doc *Document, fn PodFunc) error {
	obj, ok := doc.Object.(map[string]any)
	if !ok {
		return fmt.Errorf("%s: not an object (a %s); want a Kubernetes object or a List", docName(doc.Source, doc.Index), jsonKind(doc.Object))
	}
	return eachPodOrList(obj, Workload{Source: doc.Source, Document: doc.Index}, fn, 0)
}

func docName(source string, index int) string {
	if source == "" {
		return fmt.Sprintf("document %d", index)
	}
	return fmt.Sprintf("%s: document %d", source, index)
}

func eachPodOrList(obj map[string]any, w Workload, fn PodFunc, depth int) error {
	kind, _ := obj["kind"].(string)
	if kind == "" {
		kind = w.Kind // inferred from a typed list
	}
	rawItems, hasItems := obj["items"]
	if !hasItems || !strings.HasSuffix(kind, "List") {
		return eachPodIn(obj, w, fn)
	}
	where := w.position()
	if depth >= maxListDepth {
		return fmt.Errorf("%s: Lists nested more than %d deep", where, maxListDepth)
	}
	if rawItems == nil {
		return nil // items: null, an empty List
	}
	items, ok := rawItems.([]any)
	if !ok {
		return fmt.Errorf("%s (%s): items: not an array (a %s)", where, kind, jsonKind(rawItems))
	}
	for i, it := range items {
		iw := Workload{Source: w.Source, Document: w.Document}
		if w.Item == nil {
			iw.Item = ptr(i)
		} else {
			iw.Item = w.Item
			iw.Nested = append(slices.Clone(w.Nested), i)
		}
		if it == nil {
			continue // a null item: nothing to do, kept as it is
		}
		item, ok := it.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object (a %s)", iw.position(), jsonKind(it))
		}
		// Items of a typed list (DeploymentList, PodList...) may leave kind
		// and apiVersion out: they are the list's, as the apiserver and
		// kubectl read them.
		_, hasKind := item["kind"]
		_, hasAPIVersion := item["apiVersion"]
		if !hasKind && !hasAPIVersion && kind != "List" {
			iw.Kind = strings.TrimSuffix(kind, "List")
		}
		if err := eachPodOrList(item, iw, fn, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// jsonKind names the JSON type of a generic value, for messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	case string:
		return "string"
	case bool:
		return "boolean"
	default:
		return "number"
	}
}

func eachPodIn(obj map[string]any, w Workload, fn PodFunc) error {
	if k, ok := obj["kind"].(string); ok || w.Kind == "" {
		w.Kind = k
	}
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
	// Empty collections (null, [], {}) where the injector writes: recorded
	// in the status, so that uninject puts them back exactly.
	empties := emptyCollections(tmpl)
	// A pod template may leave metadata out (or null); the patch paths need
	// it. An empty metadata left after the patch is dropped again.
	if md, ok := tmpl["metadata"]; !ok || md == nil {
		tmpl["metadata"] = map[string]any{}
	}
	oldStatus := statusOf(tmpl)
	raw, err := json.Marshal(tmpl)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	pod, err := DecodePod(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", w, locateDecodeError(tmpl, path, err))
	}
	if pod.Namespace == "" {
		pod.Namespace = w.Namespace
	}
	patch, err := fn(w, pod)
	if err != nil {
		if e, ok := AsError(err); ok {
			return fmt.Errorf("%s: %w", w, &Error{Reason: e.Reason, Field: prefixField(path, e.Field), Message: e.Message})
		}
		return fmt.Errorf("%s: %w", w, err)
	}
	if len(patch) == 0 {
		restoreMetadata(tmpl, empties, parent != nil)
		return nil
	}
	patch = stampEmpties(patch, oldStatus, empties)
	patched, err := ApplyPatch(raw, patch)
	if err != nil {
		return fmt.Errorf("%s: apply patch: %w", w, err)
	}
	decoded, err := decodeGeneric(patched)
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	newTmpl := decoded.(map[string]any)
	if oldStatus != nil && statusOf(newTmpl) == nil { // uninject
		restoreEmpties(newTmpl, oldStatus.Empty)
		empties = maps.Clone(oldStatus.Empty)
	}
	restoreMetadata(newTmpl, empties, parent != nil)
	if parent == nil {
		clear(obj)
		maps.Copy(obj, newTmpl)
		return nil
	}
	parent[key] = newTmpl
	return nil
}

// restoreMetadata drops a pod template's metadata when the walk added it
// (empty, and it was absent), and gives back a null one.
func restoreMetadata(tmpl map[string]any, empties map[string]string, isTemplate bool) {
	md, ok := tmpl["metadata"].(map[string]any)
	if !ok || len(md) > 0 {
		return
	}
	switch v, was := empties[emptyMetadata]; {
	case was && v == "null":
		tmpl["metadata"] = nil
	case was:
		// metadata: {} was written; keep it
	case isTemplate:
		delete(tmpl, "metadata")
	}
}

// The collections the injector adds to, as JSON pointers into the pod.
const (
	emptyMetadata       = "/metadata"
	emptyAnnotations    = "/metadata/annotations"
	emptyInitContainers = "/spec/initContainers"
	emptyVolumes        = "/spec/volumes"
)

// emptyCollections lists the collections the injector writes to that are
// present and null, [] or {} in the raw pod (template). The apiserver never
// sends such fields; Helm output and hand-written manifests often have them.
func emptyCollections(tmpl map[string]any) map[string]string {
	out := map[string]string{}
	note := func(path string, parent map[string]any, key string) {
		v, ok := parent[key]
		if !ok {
			return
		}
		switch x := v.(type) {
		case nil:
			out[path] = "null"
		case []any:
			if len(x) == 0 {
				out[path] = "[]"
			}
		case map[string]any:
			if len(x) == 0 {
				out[path] = "{}"
			}
		}
	}
	note(emptyMetadata, tmpl, "metadata")
	if md, ok := tmpl["metadata"].(map[string]any); ok {
		note(emptyAnnotations, md, "annotations")
	}
	if spec, ok := tmpl["spec"].(map[string]any); ok {
		note(emptyInitContainers, spec, "initContainers")
		note(emptyVolumes, spec, "volumes")
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// statusOf reads the status annotation of a raw pod (template); nil when
// there is none or it does not parse.
func statusOf(tmpl map[string]any) *Status {
	md, _ := tmpl["metadata"].(map[string]any)
	ann, _ := md["annotations"].(map[string]any)
	s, ok := ann[StatusAnnotation].(string)
	if !ok {
		return nil
	}
	st, err := ParseStatus(s)
	if err != nil {
		return nil
	}
	return st
}

// stampEmpties records, in the status the patch writes, the empty
// collections the pod had before (and those an older status recorded).
func stampEmpties(patch Patch, old *Status, empties map[string]string) Patch {
	merged := map[string]string{}
	if old != nil {
		maps.Copy(merged, old.Empty)
	}
	maps.Copy(merged, empties)
	if len(merged) == 0 {
		return patch
	}
	stamp := func(v string) (string, bool) {
		st, err := ParseStatus(v)
		if err != nil {
			return "", false
		}
		st.Empty = merged
		return st.encode(), true
	}
	out := slices.Clone(patch)
	for i, op := range out {
		switch {
		case (op.Op == "add" || op.Op == "replace") && op.Path == "/metadata/annotations/"+escapePointer(StatusAnnotation):
			if v, ok := op.Value.(string); ok {
				if s, ok := stamp(v); ok {
					out[i].Value = s
				}
			}
		case op.Op == "add" && op.Path == "/metadata/annotations":
			if m, ok := op.Value.(map[string]string); ok {
				if s, ok := stamp(m[StatusAnnotation]); ok {
					m = maps.Clone(m)
					m[StatusAnnotation] = s
					out[i].Value = m
				}
			}
		}
	}
	return out
}

// restoreEmpties puts back the empty collections a status recorded, where
// uninject left the field absent or empty.
func restoreEmpties(tmpl map[string]any, empties map[string]string) {
	value := func(kind string) any {
		switch kind {
		case "[]":
			return []any{}
		case "{}":
			return map[string]any{}
		}
		return nil
	}
	set := func(parent map[string]any, key, kind string) {
		if parent == nil {
			return
		}
		if cur, ok := parent[key]; ok {
			switch x := cur.(type) {
			case []any:
				if len(x) > 0 {
					return
				}
			case map[string]any:
				if len(x) > 0 {
					return
				}
			case nil:
			default:
				return
			}
		}
		parent[key] = value(kind)
	}
	md, _ := tmpl["metadata"].(map[string]any)
	if kind, ok := empties[emptyAnnotations]; ok {
		set(md, "annotations", kind)
	}
	spec, _ := tmpl["spec"].(map[string]any)
	if kind, ok := empties[emptyInitContainers]; ok {
		set(spec, "initContainers", kind)
	}
	if kind, ok := empties[emptyVolumes]; ok {
		set(spec, "volumes", kind)
	}
}

// prefixField puts the template's path in front of a field of the pod.
func prefixField(path []string, field string) string {
	if len(path) == 0 || field == "" || strings.HasPrefix(field, "annotation ") || strings.HasPrefix(field, "label ") ||
		strings.HasPrefix(field, "namespace ") || strings.HasPrefix(field, "injector config") || field == "pod" || field == "object" {
		return field
	}
	return fieldOf(path) + "." + field
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
	return in.ExplainLimited(context.Background(), data, ov, 0)
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
