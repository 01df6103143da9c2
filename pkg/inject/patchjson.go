package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/internal/jsonenc"
)

// The patch's JSON is most of what the engine costs per pod when it is
// written with encoding/json alone (a container is some 40 pointers and
// quantities to reflect over). What depends only on the config — the
// volume, the security contexts, the resources, the environment, the
// mounts — is marshalled once per Injector, by encoding/json, and spliced
// into each patch; only the members that depend on the pod are marshalled
// per request. The bytes are those encoding/json writes for the whole
// patch (TestPatchJSONIsEncodingJSON and FuzzInject check it).

// valueJSON writes the JSON of a patch op's value.
type valueJSON interface {
	appendJSON(dst []byte, v any) ([]byte, error)
}

// JSON marshals the patch; an empty patch is "[]". The bytes are those of
// json.Marshal([]PatchOp(p)).
func (p Patch) JSON() ([]byte, error) {
	if len(p) == 0 {
		return []byte("[]"), nil
	}
	return p.AppendJSON(make([]byte, 0, 4096))
}

// AppendJSON appends the patch's JSON (as JSON writes it) to dst.
func (p Patch) AppendJSON(dst []byte) ([]byte, error) {
	if len(p) == 0 {
		return append(dst, "[]"...), nil
	}
	dst = append(dst, '[')
	for i := range p {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = p[i].appendJSON(dst); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

func (op *PatchOp) appendJSON(dst []byte) ([]byte, error) {
	dst = append(dst, `{"op":`...)
	dst = jsonenc.String(dst, op.Op)
	dst = append(dst, `,"path":`...)
	dst = jsonenc.String(dst, op.Path)
	if op.Value == nil { // omitempty: a nil interface is left out
		return append(dst, '}'), nil
	}
	dst = append(dst, `,"value":`...)
	var err error
	switch v := op.Value.(type) {
	case string:
		dst = jsonenc.String(dst, v)
	default:
		if op.enc != nil {
			dst, err = op.enc.appendJSON(dst, v)
		} else {
			dst, err = appendMarshal(dst, v)
		}
	}
	if err != nil {
		return nil, err
	}
	return append(dst, '}'), nil
}

// appendMarshal appends json.Marshal(v).
func appendMarshal(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(dst, b...), nil
}

// rawJSON is a value marshalled once: it depends only on the config.
type rawJSON []byte

func (r rawJSON) appendJSON(dst []byte, _ any) ([]byte, error) { return append(dst, r...), nil }

// containerJSON writes one of the containers the injector adds: the
// members that depend only on the config as encoding/json wrote them once
// for a template container, the others marshalled from the container at
// hand.
type containerJSON struct {
	members []member
}

// member is one member of a container's JSON object, in encoding/json's
// order: `"name":value` when fixed, `"name":` and the field to marshal
// when open.
type member struct {
	json  []byte
	field int // the corev1.Container field index of an open member; -1 when fixed
}

// newContainerJSON cuts the JSON of template into members. The members
// named in fixed depend only on the config: they are kept as marshalled.
// Every other member the template has is open. Members the template does
// not have must be empty in every container written with it.
func newContainerJSON(template corev1.Container, fixed ...string) (*containerJSON, error) {
	b, err := json.Marshal(template)
	if err != nil {
		return nil, err
	}
	fields := containerFields()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("container JSON does not start with an object: %v", err)
	}
	t := &containerJSON{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		key, _ := json.Marshal(name)
		m := member{json: append(key, ':'), field: -1}
		switch idx, ok := fields[name]; {
		case !ok:
			return nil, fmt.Errorf("container JSON member %q is no corev1.Container field", name)
		case slices.Contains(fixed, name):
			m.json = append(m.json, value...)
		default:
			m.field = idx
		}
		t.members = append(t.members, m)
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("container JSON has trailing data")
	}
	return t, nil
}

// containerFields maps the JSON names of corev1.Container's fields to
// their indices.
func containerFields() map[string]int {
	fields := map[string]int{}
	t := reflect.TypeFor[corev1.Container]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

// containerField is field i of c, to marshal.
func containerField(c *corev1.Container, i int) any {
	return reflect.ValueOf(c).Elem().Field(i).Interface()
}

func (t *containerJSON) appendJSON(dst []byte, v any) ([]byte, error) {
	c, ok := v.(corev1.Container)
	if !ok {
		return appendMarshal(dst, v)
	}
	return t.appendContainer(dst, &c)
}

// appendContainer writes c. An open member that is empty in c (which
// encoding/json might leave out) makes it write c with encoding/json.
func (t *containerJSON) appendContainer(dst []byte, c *corev1.Container) ([]byte, error) {
	start := len(dst)
	dst = append(dst, '{')
	for i, m := range t.members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, m.json...)
		if m.field < 0 {
			continue
		}
		at := len(dst)
		var err error
		if dst, err = appendField(dst, containerField(c, m.field)); err != nil {
			return nil, err
		}
		if omittable(dst[at:]) {
			return appendMarshal(dst[:start], *c)
		}
	}
	return append(dst, '}'), nil
}

// appendField appends a container field's JSON: strings and string lists
// (the arguments, which change with every pod) directly, the rest with
// encoding/json.
func appendField(dst []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case string:
		return jsonenc.String(dst, v), nil
	case []string:
		return jsonenc.Strings(dst, v), nil
	}
	return appendMarshal(dst, v)
}

// omittable says whether a member's value is one omitempty may leave out.
func omittable(b []byte) bool {
	switch string(b) {
	case `""`, "null", "[]", "{}", "0", "false":
		return true
	}
	return false
}

// containersJSON writes a list of the containers the injector adds, each
// with its own template.
type containersJSON []*containerJSON

func (ts containersJSON) appendJSON(dst []byte, v any) ([]byte, error) {
	cs, ok := v.([]corev1.Container)
	if !ok || len(cs) != len(ts) {
		return appendMarshal(dst, v)
	}
	dst = append(dst, '[')
	for i := range cs {
		if i > 0 {
			dst = append(dst, ',')
		}
		var err error
		if dst, err = ts[i].appendContainer(dst, &cs[i]); err != nil {
			return nil, err
		}
	}
	return append(dst, ']'), nil
}

// encoders are an Injector's writers of the values it adds, built once
// from its config. A nil writer (a template that could not be built) means
// encoding/json.
type encoders struct {
	init *containerJSON
	// proxy by [native][resources][ports]: the resources are the config's
	// unless a cpu or memory setting changes them; the stats and admin
	// ports (in the port list, the probes and the postStart hook) are the
	// config's unless a pod's own ports or settings moved them.
	proxy      [2][2][2]*containerJSON
	volume     rawJSON // the config volume
	volumeList rawJSON // []Volume{the config volume}
}

// The members of the injected containers that depend only on the config.
var (
	initFixed  = []string{"name", "image", "resources", "terminationMessagePolicy", "imagePullPolicy", "securityContext"}
	proxyFixed = []string{"name", "env", "restartPolicy", "volumeMounts", "terminationMessagePolicy", "imagePullPolicy", "securityContext"}
	// proxyPortMembers depend on the stats and admin ports alone.
	proxyPortMembers = []string{"ports", "readinessProbe", "startupProbe", "lifecycle"}
)

// newEncoders marshals what the config alone decides, from template
// containers built the way build builds them for a pod without settings.
func (in *Injector) newEncoders() encoders {
	var e encoders
	ports := in.configPorts()
	spec, _, err := in.redirectSpec(settings{}, ports, podPorts{})
	if err != nil {
		return e
	}
	e.init, _ = newContainerJSON(in.initContainer(spec), initFixed...)
	for n, native := range []bool{false, true} {
		proxy, err := in.proxyContainer(settings{}, ports, podPorts{}, spec, native, Overrides{InjectorVersion: "template"})
		if err != nil {
			continue
		}
		for r := range 2 {
			for p := range 2 {
				fixed := slices.Clone(proxyFixed)
				if r == 1 {
					fixed = append(fixed, "resources")
				}
				if p == 1 {
					fixed = append(fixed, proxyPortMembers...)
				}
				e.proxy[n][r][p], _ = newContainerJSON(proxy, fixed...)
			}
		}
	}
	v := configVolume()
	e.volume, _ = json.Marshal(v)
	e.volumeList, _ = json.Marshal([]corev1.Volume{v})
	return e
}

// configPorts are the proxy ports the config asks for.
func (in *Injector) configPorts() Ports {
	p := in.cfg.Ports
	return Ports{Inbound: p.Inbound, Outbound: p.Outbound, Stats: p.Stats, Admin: p.Admin}
}

// proxyJSON is the writer of the proxy container for a pod's settings,
// ports and native mode.
func (in *Injector) proxyJSON(set settings, ports Ports, native bool) *containerJSON {
	n, r, p := 0, 0, 0
	if native {
		n = 1
	}
	if set.cpu == nil && set.memory == nil {
		r = 1
	}
	if cp := in.configPorts(); ports.Stats == cp.Stats && ports.Admin == cp.Admin {
		p = 1
	}
	return in.enc.proxy[n][r][p]
}
