package inject

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// patcher records JSON Patch operations and applies each one to a typed
// copy of the pod as it goes, so that every path it writes is computed
// against the state the previous operations leave. Only what the patch
// touches is copied: the incoming pod is never modified.
//
// The operations are add ops of whole typed values, a replace of our own
// status annotation, and removals of what our own older status lists. The
// incoming JSON is never re-marshalled, so fields unknown to our k8s.io/api
// survive the patch untouched.
type patcher struct {
	pod *corev1.Pod
	ops Patch
	// ownAnnotations is set once the annotation map has been copied.
	ownAnnotations bool
}

func newPatcher(pod *corev1.Pod) *patcher {
	cp := *pod
	return &patcher{pod: &cp, ops: make(Patch, 0, 8)}
}

func (p *patcher) add(path string, v any) {
	p.ops = append(p.ops, PatchOp{Op: "add", Path: path, Value: v})
}

// addEncoded adds v, whose JSON enc writes (encoding/json when nil).
func (p *patcher) addEncoded(path string, v any, enc valueJSON) {
	p.ops = append(p.ops, PatchOp{Op: "add", Path: path, Value: v, enc: enc})
}

// injected is a container the injector adds, with the writer of its JSON
// (nil: encoding/json).
type injected struct {
	c   corev1.Container
	enc *containerJSON
}

// insertInitContainers inserts cs at index i of spec.initContainers.
func (p *patcher) insertInitContainers(i int, cs ...injected) {
	list := p.pod.Spec.InitContainers
	values := make([]corev1.Container, len(cs))
	for k := range cs {
		values[k] = cs[k].c
	}
	if len(list) == 0 {
		encs := make(containersJSON, len(cs))
		for k := range cs {
			if encs[k] = cs[k].enc; encs[k] == nil {
				encs = nil
				break
			}
		}
		p.addEncoded("/spec/initContainers", values, encOf(encs))
	} else {
		for k := range cs {
			p.addEncoded("/spec/initContainers/"+strconv.Itoa(i+k), cs[k].c, encOf(cs[k].enc))
		}
	}
	// Clip: the insert copies, so the caller's pod is never modified.
	p.pod.Spec.InitContainers = slices.Insert(slices.Clip(list), i, values...)
}

func (p *patcher) appendInitContainer(c injected) {
	p.insertInitContainers(len(p.pod.Spec.InitContainers), c)
}

// insertContainer inserts c at index i of spec.containers (never empty).
func (p *patcher) insertContainer(i int, c injected) {
	p.addEncoded("/spec/containers/"+strconv.Itoa(i), c.c, encOf(c.enc))
	p.pod.Spec.Containers = slices.Insert(slices.Clip(p.pod.Spec.Containers), i, c.c)
}

// appendVolume appends v; list and one are the JSON of []Volume{v} and v
// (nil: encoding/json).
func (p *patcher) appendVolume(v corev1.Volume, list, one rawJSON) {
	if len(p.pod.Spec.Volumes) == 0 {
		p.addEncoded("/spec/volumes", []corev1.Volume{v}, encOf(list))
	} else {
		p.addEncoded("/spec/volumes/-", v, encOf(one))
	}
	p.pod.Spec.Volumes = append(slices.Clip(p.pod.Spec.Volumes), v)
}

// encOf is a writer as a valueJSON: nil when it has nothing (a typed nil
// in an interface is not nil).
func encOf(enc valueJSON) valueJSON {
	switch e := enc.(type) {
	case *containerJSON:
		if e == nil {
			return nil
		}
	case containersJSON:
		if e == nil {
			return nil
		}
	case rawJSON:
		if e == nil {
			return nil
		}
	}
	return enc
}

// setAnnotation adds an annotation, or replaces it when the pod has it.
func (p *patcher) setAnnotation(key, value string) {
	if p.pod.Annotations == nil {
		p.add("/metadata/annotations", map[string]string{key: value})
		p.pod.Annotations = map[string]string{key: value}
		p.ownAnnotations = true
		return
	}
	op := "add"
	if _, exists := p.pod.Annotations[key]; exists {
		op = "replace"
	}
	p.ops = append(p.ops, PatchOp{Op: op, Path: annotationPath(key), Value: value})
	p.ownAnnotationMap()
	p.pod.Annotations[key] = value
}

func (p *patcher) ownAnnotationMap() {
	if !p.ownAnnotations {
		p.pod.Annotations = maps.Clone(p.pod.Annotations)
		p.ownAnnotations = true
	}
}

// removeInjected removes what an older injection's status lists: its
// containers, volumes and annotations (the status annotation itself is
// replaced afterwards, or removed by uninject). Indices are removed from the
// highest down so each path is valid when it is applied.
func (p *patcher) removeInjected(st *Status) {
	spec := &p.pod.Spec
	spec.InitContainers = removeNamed(p, "/spec/initContainers/", spec.InitContainers, st.InitContainers, func(c corev1.Container) string { return c.Name })
	spec.Containers = removeNamed(p, "/spec/containers/", spec.Containers, st.Containers, func(c corev1.Container) string { return c.Name })
	spec.Volumes = removeNamed(p, "/spec/volumes/", spec.Volumes, st.Volumes, func(v corev1.Volume) string { return v.Name })
	for _, key := range st.Annotations {
		if _, ok := p.pod.Annotations[key]; ok && key != StatusAnnotation {
			p.ops = append(p.ops, PatchOp{Op: "remove", Path: annotationPath(key)})
			p.ownAnnotationMap()
			delete(p.pod.Annotations, key)
		}
	}
}

// removeStatus removes the status annotation (uninject).
func (p *patcher) removeStatus() {
	if _, ok := p.pod.Annotations[StatusAnnotation]; ok {
		p.ops = append(p.ops, PatchOp{Op: "remove", Path: annotationPath(StatusAnnotation)})
		p.ownAnnotationMap()
		delete(p.pod.Annotations, StatusAnnotation)
	}
}

// dropEmptied removes the lists and the annotation map that the removals
// left empty but that were not empty in the original pod: injection added
// them whole, so uninject takes them away whole.
func (p *patcher) dropEmptied(orig *corev1.Pod) {
	if len(orig.Spec.InitContainers) > 0 && len(p.pod.Spec.InitContainers) == 0 {
		p.ops = append(p.ops, PatchOp{Op: "remove", Path: "/spec/initContainers"})
		p.pod.Spec.InitContainers = nil
	}
	if len(orig.Spec.Volumes) > 0 && len(p.pod.Spec.Volumes) == 0 {
		p.ops = append(p.ops, PatchOp{Op: "remove", Path: "/spec/volumes"})
		p.pod.Spec.Volumes = nil
	}
	if len(orig.Annotations) > 0 && len(p.pod.Annotations) == 0 {
		p.ops = append(p.ops, PatchOp{Op: "remove", Path: "/metadata/annotations"})
		p.pod.Annotations = nil
	}
}

// removeNamed removes the items whose names are listed, emitting remove ops
// from the highest index down, and returns a new slice without them.
func removeNamed[T any](p *patcher, prefix string, items []T, names []string, name func(T) string) []T {
	if len(names) == 0 || len(items) == 0 {
		return items
	}
	var keep []T
	removed := false
	for i := len(items) - 1; i >= 0; i-- {
		if slices.Contains(names, name(items[i])) {
			p.ops = append(p.ops, PatchOp{Op: "remove", Path: prefix + strconv.Itoa(i)})
			removed = true
		}
	}
	if !removed {
		return items
	}
	for _, it := range items {
		if !slices.Contains(names, name(it)) {
			keep = append(keep, it)
		}
	}
	if keep == nil {
		keep = []T{} // the JSON array still exists, empty
	}
	return keep
}

// The paths of the annotations every injection writes, escaped once.
var ownAnnotationPaths = map[string]string{
	StatusAnnotation: "/metadata/annotations/" + escapePointer(StatusAnnotation),
	promScrape:       "/metadata/annotations/" + escapePointer(promScrape),
	promPort:         "/metadata/annotations/" + escapePointer(promPort),
	promPath:         "/metadata/annotations/" + escapePointer(promPath),
}

// annotationPath is the JSON Pointer of the annotation key.
func annotationPath(key string) string {
	if p, ok := ownAnnotationPaths[key]; ok {
		return p
	}
	return "/metadata/annotations/" + escapePointer(key)
}

// escapePointer escapes a JSON Pointer reference token (RFC 6901).
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '~':
			b.WriteString("~0")
		case '/':
			b.WriteString("~1")
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
