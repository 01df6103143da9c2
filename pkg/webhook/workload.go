package webhook

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// Paths of the validating webhook entry for workloads (Deployments,
// StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs): the engine runs on
// the pod template and the answer carries only warnings, which kubectl
// prints to the person who applied the workload. Pod admission warnings go
// to whoever creates the pods (the controller-manager), never to that
// person.
const (
	PathWorkload      = "/workload"
	PathWorkloadAudit = "/workload-audit"
)

// workloadKinds are the kinds whose pod template is checked, by API group.
var workloadKinds = map[string][]string{
	"apps":  {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"},
	"batch": {"Job", "CronJob"},
}

// workloadReview is the envelope with request.object left generic.
type workloadReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		requestMeta
		Object json.RawMessage `json:"object"`
	} `json:"request"`
}

// serveWorkload answers POST /workload and /workload-audit. It never
// denies: a workload it cannot read is allowed without warnings (the pod
// webhook decides when the pods come).
func (s *Server) serveWorkload(w http.ResponseWriter, r *http.Request, audit bool) {
	start := s.now()
	body, finish, ok := s.readReview(w, r, start)
	defer finish()
	if !ok {
		return
	}
	var rev workloadReview
	if err := decodeJSON(body, &rev); err != nil || rev.Request == nil || rev.Request.UID == "" ||
		(rev.APIVersion != admissionV1 && rev.APIVersion != admissionV1beta1) {
		s.failHTTP(w, start, badRequestf("request body is not an %s JSON document with a request and its uid", reviewKind))
		return
	}
	out := &reviewOut{APIVersion: rev.APIVersion, Kind: reviewKind, Response: responseOut{UID: rev.Request.UID, Allowed: true}}
	out.Response.Warnings = limitWarnings(s.workloadWarnings(rev.Request.requestMeta, rev.Request.Object, audit))
	writeJSON(w, http.StatusOK, out.appendJSON(nil))
	s.log.DebugContext(r.Context(), "workload checked", "uid", rev.Request.UID, "namespace", rev.Request.Namespace,
		"kind", rev.Request.Kind.Kind, "name", rev.Request.Name, "warnings", len(out.Response.Warnings))
}

// workloadWarnings runs the engine on the workload's pod template and says
// what its pods will get: moved ports, a refusal, the engine's warnings.
func (s *Server) workloadWarnings(req requestMeta, object json.RawMessage, audit bool) []string {
	kinds, ok := workloadKinds[req.Kind.Group]
	if !ok || !slices.Contains(kinds, req.Kind.Kind) || req.SubResource != "" ||
		(req.Operation != "CREATE" && req.Operation != "UPDATE") || req.Namespace == "" {
		return nil
	}
	path, _ := inject.TemplatePath(req.Kind.Kind)
	var obj map[string]any
	if err := json.Unmarshal(object, &obj); err != nil || obj == nil {
		return nil
	}
	tmpl := any(obj)
	for _, k := range path {
		m, _ := tmpl.(map[string]any)
		tmpl = m[k]
	}
	raw, err := json.Marshal(tmpl)
	if err != nil || tmpl == nil {
		return nil
	}
	pod, err := inject.DecodePod(raw)
	if err != nil {
		return nil
	}
	pod.Namespace = req.Namespace
	name := req.Name
	if name == "" {
		md, _ := obj["metadata"].(map[string]any)
		if gn, _ := md["generateName"].(string); gn != "" {
			name = gn + "*"
		}
	}
	who := "pods of " + strings.ToLower(req.Kind.Kind) + "/" + name
	res, err := s.inject(s.config.get().injector, pod, inject.Overrides{
		Namespace: req.Namespace, NativeSidecarSupported: s.native, InjectorVersion: s.version,
	})
	audit = audit || res.Audit
	var ws []string
	if err != nil {
		// What is wrong first, then where: a warning is cut at
		// MaxWarningLength characters.
		why := err.Error()
		if e, ok := inject.AsError(err); ok && e.Field != "" {
			why = e.Message + " (" + e.Field + ")"
		}
		if audit {
			ws = append(ws, who+" would be refused if injection were enabled: "+why)
		} else {
			ws = append(ws, who+" will be refused: "+why)
		}
	}
	if res.Decision == inject.DecisionSkip || res.Decision == "" {
		return ws
	}
	prefix := who + ": "
	if audit {
		prefix = who + " (audit, not injected): "
	}
	for _, w := range res.Warnings {
		ws = append(ws, prefix+w)
	}
	return ws
}
