package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// explainMediaTypes are the bodies /explain reads: a Pod, a workload or a
// List, as JSON or YAML (one or more documents).
var explainMediaTypes = []string{"application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}

// serveExplain answers POST /explain with the engine's decision for every pod
// and pod template of the body: the JSON of `sidecar-injector explain -o
// json`. Query parameters: namespace (for objects without one) and
// namespace-labels (k=v,...; without it the namespace counts as
// sidecar-injection=enabled, as for the CLI).
func (s *Server) serveExplain(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	fail := func(err error) {
		s.metrics.explains.WithLabelValues("error").Inc()
		s.failHTTPQuiet(w, err)
		s.log.Info("explain rejected", "error", err.Error(), "duration_ms", float64(s.now().Sub(start).Microseconds())/1000)
	}
	if err := checkExplainContentType(r.Header.Get("Content-Type")); err != nil {
		fail(err)
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		fail(badRequestf("query %s: %v", quote(r.URL.RawQuery), err))
		return
	}
	ov := inject.Overrides{Namespace: q.Get("namespace"), NativeSidecarSupported: s.native, InjectorVersion: s.version}
	if ns := ov.Namespace; ns != "" && len(validation.IsDNS1123Label(ns)) > 0 {
		fail(badRequestf("query parameter namespace=%s: not a namespace name", quote(ns)))
		return
	}
	if raw, ok := q["namespace-labels"]; ok {
		if ov.NamespaceLabels, err = ParseLabels(strings.Join(raw, ",")); err != nil {
			fail(badRequestf("query parameter namespace-labels: %v", err))
			return
		}
	}
	body, buf, release, err := s.readBodyLimit(w, r, maxExplainBodyBytes)
	defer s.putBuf(buf)
	defer release()
	if err != nil {
		fail(err)
		return
	}
	if len(bytes.TrimSpace(body)) == 0 {
		fail(badRequestf("request body is empty: want a Pod, a workload or a List (JSON or YAML)"))
		return
	}
	// Its own small budget: explain never competes with admission for
	// slots, and a flood of it is answered 429 at once. Taken once the body is read.
	select {
	case s.explainSem <- struct{}{}:
		defer func() { <-s.explainSem }()
	default:
		s.metrics.explains.WithLabelValues("error").Inc()
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, httpErrorBody(http.StatusTooManyRequests,
			fmt.Sprintf("more than %d explain requests in flight; retry", maxExplainInFlight)))
		return
	}
	exps, err := s.config.get().injector.ExplainLimited(r.Context(), body, ov, maxExplainPods)
	switch {
	case r.Context().Err() != nil:
		s.metrics.explains.WithLabelValues("error").Inc()
		s.log.Info("explain abandoned: the client went away", "duration_ms", float64(s.now().Sub(start).Microseconds())/1000)
		return
	case errors.Is(err, inject.ErrTooManyPods):
		fail(&badRequest{code: http.StatusRequestEntityTooLarge, reason: string(ReasonBodyTooLarge), msg: "explain: " + err.Error() + "; split the manifests"})
		return
	case err != nil:
		fail(badRequestf("explain: %v", err))
		return
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&limitedWriter{w: &out, n: maxExplainAnswerBytes})
	enc.SetIndent("", "  ")
	if err := enc.Encode(exps); err != nil {
		if errors.Is(err, errAnswerTooLarge) {
			fail(&badRequest{code: http.StatusRequestEntityTooLarge, reason: string(ReasonBodyTooLarge),
				msg: fmt.Sprintf("explain: the answer would be over %d bytes; send fewer objects", maxExplainAnswerBytes)})
			return
		}
		fail(fmt.Errorf("encode the explanation: %w", err))
		return
	}
	s.metrics.explains.WithLabelValues("ok").Inc()
	writeJSON(w, http.StatusOK, out.Bytes())
	s.log.Info("explain", "pods", len(exps), "duration_ms", float64(s.now().Sub(start).Microseconds())/1000)
}

// /explain stays on the admission (TLS) port: it answers what the
// webhook would do with the webhook's own config, and needs the same TLS.
// Its caps keep it from competing with admission: its own concurrency
// budget, a body, pod and answer cap far below admission's, and work that
// stops when the client leaves.
const (
	maxExplainInFlight    = 2
	maxExplainBodyBytes   = 1 << 20
	maxExplainPods        = 200
	maxExplainAnswerBytes = 4 << 20
)

var errAnswerTooLarge = errors.New("answer too large")

// limitedWriter fails once more than n bytes were written.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		return 0, errAnswerTooLarge
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// failHTTPQuiet writes a non-200 JSON Status answer without admission metrics.
func (s *Server) failHTTPQuiet(w http.ResponseWriter, err error) {
	code, msg := http.StatusInternalServerError, err.Error()
	if br, ok := err.(*badRequest); ok {
		code = br.code
	}
	writeJSON(w, code, httpErrorBody(code, msg))
}

func checkExplainContentType(ct string) error {
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil {
		for _, want := range explainMediaTypes {
			if mt == want {
				if cs, ok := params["charset"]; !ok || equalFoldASCII(cs, "utf-8") || equalFoldASCII(cs, "utf8") {
					return nil
				}
			}
		}
	}
	return &badRequest{code: http.StatusUnsupportedMediaType, reason: string(ReasonUnsupportedMediaType),
		msg: fmt.Sprintf("Content-Type %s: want application/json or application/yaml", quote(ct))}
}

// ParseLabels parses "k=v,k2=v2" into a label map, checking keys and values
// as Kubernetes does. An empty string is an empty (non-nil) map: a namespace
// without labels.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%s: want key=value", quote(kv))
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("label key %s: %s", quote(k), strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("label %s value %s: %s", quote(k), quote(v), strings.Join(errs, "; "))
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label key %s given twice", quote(k))
		}
		out[k] = v
	}
	return out, nil
}
