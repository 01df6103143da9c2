package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// maxPooledBody is the largest body buffer kept for reuse; bigger ones (rare:
// pods are a few KiB) go to the garbage collector so the pool never pins
// megabytes.
const maxPooledBody = 256 << 10

// decision is what one admission request came to: the metric labels and the
// fields of its log line.
type decision struct {
	result    Result
	reason    inject.Reason
	namespace string
	pod       string // name, else generateName
	operation string
	dryRun    bool
	audit     bool
	warnings  int
	message   string // deny message
}

// reviewMode says which path a review came in on.
type reviewMode uint8

const (
	modeMutate       reviewMode = iota // /mutate
	modeAudit                          // /audit: decide, report, never patch
	modeInvalidLabel                   // /invalid-namespace-label: warn, never patch
)

// serveReview answers POST /mutate, /audit and /invalid-namespace-label.
func (s *Server) serveReview(w http.ResponseWriter, r *http.Request, mode reviewMode) {
	start := s.now()
	body, finish, ok := s.readReview(w, r, start)
	defer finish()
	if !ok {
		return
	}
	rev, err := decodeReview(body)
	if err != nil {
		s.failHTTP(w, start, err)
		return
	}
	var out *reviewOut
	var d decision
	if mode == modeInvalidLabel {
		out, d = s.admitInvalidLabel(rev)
	} else {
		out, d = s.admit(rev, mode == modeAudit)
	}
	ob := s.outBufs.Get().(*bytes.Buffer)
	defer s.putOutBuf(ob)
	if err := json.NewEncoder(ob).Encode(out); err != nil {
		// Only plain values: cannot happen. Still an answer carrying the uid.
		out = newReviewOut(rev)
		out.deny(500, "sidecar-injector: encode the answer: "+err.Error())
		ob.Reset()
		_ = json.NewEncoder(ob).Encode(out)
		d.result, d.reason = ResultError, ReasonInternal
	}
	writeJSON(w, http.StatusOK, ob.Bytes())
	elapsed := s.now().Sub(start)
	s.metrics.observe(d.result, d.reason, elapsed.Seconds())
	s.logDecision(r.Context(), rev.Request.UID, d, elapsed)
}

// admit decides one well-formed review. A panic anywhere below is recovered
// into a deny carrying the uid.
func (s *Server) admit(rev *reviewIn, audit bool) (out *reviewOut, d decision) {
	req := rev.Request
	out = newReviewOut(rev)
	d = decision{namespace: req.Namespace, pod: req.Name, operation: req.Operation, audit: audit}
	if req.DryRun != nil {
		d.dryRun = *req.DryRun
	}
	defer func() {
		if p := recover(); p != nil {
			s.metrics.panics.Inc()
			s.log.Error("panic while admitting; answered with a deny", "uid", req.UID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			out = newReviewOut(rev)
			out.deny(500, fmt.Sprintf("sidecar-injector: internal error (recovered panic); request uid %s is in the webhook log", req.UID))
			d.result, d.reason, d.message = ResultError, ReasonPanic, "panic"
		}
	}()

	// Everything but a pod CREATE is allowed untouched.
	switch {
	case req.Kind.Group != "" || req.Kind.Kind != "Pod":
		out.allow(nil)
		d.result, d.reason = ResultAllowed, ReasonNotPod
		return out, d
	case req.SubResource != "":
		out.allow(nil)
		d.result, d.reason = ResultAllowed, ReasonSubresource
		return out, d
	case req.Operation != "CREATE":
		out.allow(nil)
		d.result, d.reason = ResultAllowed, ReasonNotCreate
		return out, d
	}

	pod, problem := rev.objectPod()
	if problem != "" {
		return s.denyBadRequest(out, d, ReasonBadObject, problem)
	}
	if pod.Kind != "" && pod.Kind != "Pod" {
		return s.denyBadRequest(out, d, ReasonBadObject, "request.object.kind "+quote(pod.Kind)+": want Pod")
	}
	if pod.APIVersion != "" && pod.APIVersion != "v1" {
		return s.denyBadRequest(out, d, ReasonBadObject, "request.object.apiVersion "+quote(pod.APIVersion)+": want v1")
	}
	if pod.Name == "" && pod.GenerateName == "" {
		// Also a null or missing metadata: the patch could not add to it.
		return s.denyBadRequest(out, d, ReasonBadObject, "request.object.metadata: neither name nor generateName is set")
	}
	if d.pod == "" {
		d.pod = pod.Name
	}
	if d.pod == "" {
		d.pod = pod.GenerateName
	}
	if req.Namespace == "" {
		return s.denyBadRequest(out, d, ReasonNoNamespace, "request.namespace is empty: a pod is always created in a namespace and the webhook never assumes default")
	}

	lc := s.config.get()
	ov := inject.Overrides{
		Namespace:              req.Namespace,
		NamespaceLabels:        nil, // the apiserver's namespaceSelector already decided
		NativeSidecarSupported: s.native,
		InjectorVersion:        s.version,
	}
	res, err := s.inject(lc.injector, pod, ov)
	audit = audit || res.Audit
	d.audit = audit
	if err != nil {
		e, ok := inject.AsError(err)
		if !ok {
			if audit {
				d.result, d.reason = ResultAudited, ReasonInternal
				out.allow(nil)
				out.Response.Warnings = limitWarnings([]string{"sidecar audit: would fail: " + err.Error()})
				d.warnings = len(out.Response.Warnings)
				return out, d
			}
			s.log.Error("injection engine failed", "uid", req.UID, "error", err)
			out.deny(500, "sidecar-injector: "+err.Error())
			d.result, d.reason, d.message = ResultDenied, ReasonInternal, err.Error()
			return out, d
		}
		if audit {
			out.allow(nil)
			out.Response.Warnings = limitWarnings(append([]string{"sidecar audit: would deny (" + string(e.Reason) + "): " + e.Error()}, res.Warnings...))
			d.result, d.reason, d.warnings = ResultAudited, e.Reason, len(out.Response.Warnings)
			return out, d
		}
		msg := "sidecar-injector: " + e.Error()
		out.deny(denyCode(e.Reason), msg)
		out.Response.Warnings = limitWarnings(res.Warnings)
		d.result, d.reason, d.message, d.warnings = ResultDenied, e.Reason, msg, len(out.Response.Warnings)
		return out, d
	}

	d.reason = res.Reason
	switch {
	case audit:
		d.result = ResultAudited
		out.allow(nil)
		ws := append([]string{auditWarning(res)}, s.namespaceWarnings(req.Namespace, res)...)
		out.Response.Warnings = limitWarnings(append(ws, res.Warnings...))
	case res.Decision == inject.DecisionInject:
		patch, err := res.Patch.JSON()
		if err != nil {
			s.log.Error("encode the injection patch", "uid", req.UID, "error", err)
			out.deny(500, "sidecar-injector: encode the injection patch: "+err.Error())
			d.result, d.reason, d.message = ResultDenied, ReasonInternal, err.Error()
			return out, d
		}
		d.result = ResultInjected
		out.allow(patch)
		out.Response.Warnings = limitWarnings(append(s.namespaceWarnings(req.Namespace, res), res.Warnings...))
	case res.Decision == inject.DecisionDeny:
		// A deny without an *inject.Error: still a deny with the engine's words.
		msg := "sidecar-injector: " + res.Message
		out.deny(denyCode(res.Reason), msg)
		d.result, d.message = ResultDenied, msg
		out.Response.Warnings = limitWarnings(res.Warnings)
	default:
		d.result = ResultSkipped
		out.allow(nil)
		if s.skips != nil {
			s.skips.Skipped(Skip{Namespace: req.Namespace, Pod: d.pod, Owner: metav1.GetControllerOf(pod),
				Reason: res.Reason, Message: res.Message, DryRun: d.dryRun})
		}
		ws := res.Warnings
		if w := skipWarning(res); w != "" {
			ws = append([]string{w}, ws...)
		}
		out.Response.Warnings = limitWarnings(ws)
	}
	d.warnings = len(out.Response.Warnings)
	return out, d
}

// admitInvalidLabel answers a pod CREATE in a namespace whose
// sidecar-injection label is neither enabled, disabled nor audit (the
// chart's catch-all entry sends those here): allowed, no patch, and a
// warning naming the label, its value (from the namespace cache, when it
// has seen it) and the valid values. Anything else is allowed untouched.
func (s *Server) admitInvalidLabel(rev *reviewIn) (*reviewOut, decision) {
	req := rev.Request
	out := newReviewOut(rev)
	out.allow(nil)
	d := decision{namespace: req.Namespace, pod: req.Name, operation: req.Operation, result: ResultAllowed}
	switch {
	case req.Kind.Group != "" || req.Kind.Kind != "Pod":
		d.reason = ReasonNotPod
		return out, d
	case req.SubResource != "":
		d.reason = ReasonSubresource
		return out, d
	case req.Operation != "CREATE":
		d.reason = ReasonNotCreate
		return out, d
	}
	if pod, problem := rev.objectPod(); problem == "" && d.pod == "" {
		d.pod = pod.Name
		if d.pod == "" {
			d.pod = pod.GenerateName
		}
	}
	msg := "namespace label " + inject.NamespaceLabel + " is invalid (valid: enabled, disabled, audit)"
	if s.labels != nil {
		// The cache may lag a relabel: name the value only when it is
		// itself invalid, so the warning never calls "enabled" wrong.
		if v, ok := s.labels.NamespaceLabel(req.Namespace); ok && v != "enabled" && v != "disabled" && v != "audit" {
			msg = inject.InvalidNamespaceLabel(v)
		}
	}
	out.Response.Warnings = limitWarnings([]string{"no sidecar: " + msg})
	d.result, d.reason, d.warnings = ResultSkipped, inject.ReasonNamespaceLabelInvalid, len(out.Response.Warnings)
	return out, d
}

// namespaceWarnings are the cluster side's warnings for a pod the engine
// injects (or would, in audit mode): a fresh slice, since the warner's is
// shared.
func (s *Server) namespaceWarnings(ns string, res inject.Result) []string {
	if s.nsWarn == nil || res.Decision != inject.DecisionInject {
		return nil
	}
	return slices.Clone(s.nsWarn.Warnings(ns))
}

// denyBadRequest answers a review whose object cannot be admitted: HTTP 200,
// allowed false, code 400, the field named.
func (s *Server) denyBadRequest(out *reviewOut, d decision, reason inject.Reason, msg string) (*reviewOut, decision) {
	msg = "sidecar-injector: " + msg
	out.deny(400, msg)
	d.result, d.reason, d.message = ResultDenied, reason, msg
	return out, d
}

// denyCode is the status code of an engine deny.
func denyCode(r inject.Reason) int32 {
	if r.Forbidden() {
		return 403
	}
	return 400
}

// skipWarning tells the user why a pod got no sidecar: a silent skip is the
// most confusing outcome. Expected skips (opted out, a reinvocation of an
// injected pod) stay quiet.
func skipWarning(res inject.Result) string {
	if res.Reason.Expected() {
		return ""
	}
	msg := res.Message
	if msg == "" {
		msg = string(res.Reason)
	}
	return "no sidecar (" + string(res.Reason) + "): " + msg
}

// auditWarning reports an audit-mode decision.
func auditWarning(res inject.Result) string {
	switch res.Decision {
	case inject.DecisionInject:
		return "sidecar audit: would inject (" + string(res.Reason) + "); the pod is not changed"
	case inject.DecisionDeny:
		return "sidecar audit: would deny (" + string(res.Reason) + "): " + res.Message
	}
	msg := res.Message
	if msg == "" {
		msg = string(res.Reason)
	}
	return "sidecar audit: would not inject (" + string(res.Reason) + "): " + msg
}

// logDecision writes the one log line of a decision.
func (s *Server) logDecision(ctx context.Context, uid string, d decision, elapsed time.Duration) {
	level := slog.LevelInfo
	if d.result == ResultAllowed {
		level = slog.LevelDebug // not a pod CREATE: the webhook rules should not even send these
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("uid", uid),
		slog.String("namespace", d.namespace),
		slog.String("pod", d.pod),
		slog.String("operation", d.operation),
		slog.String("decision", string(d.result)), // the result label of the metric
		slog.String("reason", string(d.reason)),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
	)
	if d.dryRun {
		attrs = append(attrs, slog.Bool("dry_run", true))
	}
	if d.audit {
		attrs = append(attrs, slog.Bool("audit", true))
	}
	if d.warnings > 0 {
		attrs = append(attrs, slog.Int("warnings", d.warnings))
	}
	if d.message != "" {
		attrs = append(attrs, slog.String("message", d.message))
	}
	s.log.LogAttrs(ctx, level, "admission", attrs...)
}

// failHTTP answers a request that is not a well-formed review: a non-200
// status and a JSON Status body; counted as result error.
func (s *Server) failHTTP(w http.ResponseWriter, start time.Time, err error) {
	var br *badRequest
	if !errors.As(err, &br) {
		br = &badRequest{code: 500, reason: string(ReasonInternal), msg: err.Error()}
	}
	writeJSON(w, br.code, httpErrorBody(br.code, br.msg))
	elapsed := s.now().Sub(start)
	s.metrics.observe(ResultError, inject.Reason(br.reason), elapsed.Seconds())
	s.log.Warn("admission request rejected", "code", br.code, "reason", br.reason, "error", br.msg,
		"duration_ms", float64(elapsed.Microseconds())/1000)
}

// checkContentType accepts application/json with any parameters, but a
// charset other than UTF-8 is refused (JSON is UTF-8).
func checkContentType(ct string) error {
	if ct == "application/json" {
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		if cs, ok := params["charset"]; !ok || equalFoldASCII(cs, "utf-8") || equalFoldASCII(cs, "utf8") {
			return nil
		}
	}
	return &badRequest{code: http.StatusUnsupportedMediaType, reason: string(ReasonUnsupportedMediaType),
		msg: fmt.Sprintf("Content-Type %s: want application/json", quote(ct))}
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// applyTimeout honours the apiserver's ?timeout=: the body must arrive
// before it (the apiserver has given up by then). Bounded by maxRequestTimeout.
func (s *Server) applyTimeout(w http.ResponseWriter, r *http.Request, start time.Time) error {
	raw := r.URL.RawQuery
	if raw == "" {
		return nil
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return badRequestf("query %s: %v", quote(raw), err)
	}
	v := q.Get("timeout")
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return badRequestf("query parameter timeout=%s: want a positive duration such as 10s", quote(v))
	}
	d = min(d, maxRequestTimeout)
	if d < s.cfg.ReadTimeout {
		// Best effort: not every ResponseWriter supports deadlines.
		_ = http.NewResponseController(w).SetReadDeadline(start.Add(d))
	}
	return nil
}

// readReview runs what every review path does before decoding: the
// content type (415 before the body is read), the request's timeout, the
// body within its caps, then an in-flight slot, taken only once the body
// is read. Not ok: the answer is written. finish releases what was taken.
func (s *Server) readReview(w http.ResponseWriter, r *http.Request, start time.Time) (body []byte, finish func(), ok bool) {
	if err := checkContentType(r.Header.Get("Content-Type")); err != nil {
		s.failHTTP(w, start, err)
		return nil, func() {}, false
	}
	if err := s.applyTimeout(w, r, start); err != nil {
		s.failHTTP(w, start, err)
		return nil, func() {}, false
	}
	body, buf, release, err := s.readBody(w, r)
	freeBody := func() { release(); s.putBuf(buf) }
	if err != nil {
		s.failHTTP(w, start, err)
		return nil, freeBody, false
	}
	done, ok := s.acquireSlot(w)
	if !ok {
		return nil, freeBody, false
	}
	return body, func() { done(); freeBody() }, true
}

// readBody reads the body into a pooled buffer, at most MaxBodyBytes+1
// bytes of it; a declared or actual size above the cap is a 413. Memory
// follows the bytes that arrive, never what a client declares: every byte
// of buffer beyond the first pooled 16 KiB is reserved from the server's
// body budget as it grows, and a request that finds the budget spent is
// answered 429 (errOverloaded). release returns the reservation; call it
// when the body is no longer used, also on error.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body []byte, bp *[]byte, release func(), err error) {
	return s.readBodyLimit(w, r, s.cfg.MaxBodyBytes)
}

// readBodyLimit is readBody with another cap.
func (s *Server) readBodyLimit(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, bp *[]byte, release func(), err error) {
	var reserved int64
	release = func() {
		if reserved > 0 {
			s.bodyBytes.Add(-reserved)
			reserved = 0
		}
	}
	if r.ContentLength > limit {
		return nil, nil, release, &badRequest{code: http.StatusRequestEntityTooLarge, reason: string(ReasonBodyTooLarge),
			msg: fmt.Sprintf("request body is %d bytes: at most %d accepted", r.ContentLength, limit)}
	}
	s.reading.Add(1)
	defer s.reading.Add(-1)
	bp = s.bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	free := int64(cap(buf)) // the pooled buffer is counted per stream, not in the budget
	grow := func(want int) bool {
		if add := int64(want) - free - reserved; add > 0 {
			if s.bodyBytes.Add(add) > s.bodyBudget {
				s.bodyBytes.Add(-add)
				return false
			}
			reserved += add
		}
		return true
	}
	in := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			// Double, or go straight to the declared length once the
			// client has sent 256 KiB of it.
			want := max(2*cap(buf), 16<<10)
			if r.ContentLength > 0 && len(buf) >= maxPooledBody {
				want = max(want, int(r.ContentLength)+1)
			}
			want = min(want, int(limit)+1)
			if !grow(want) {
				*bp = buf
				return nil, bp, release, errOverloaded(fmt.Sprintf("request bodies in memory are at the budget of %d MiB (--memory-budget); retry", s.bodyBudget>>20))
			}
			nb := make([]byte, len(buf), want)
			copy(nb, buf)
			buf = nb
		}
		n, err := in.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			*bp = buf
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, bp, release, &badRequest{code: http.StatusRequestEntityTooLarge, reason: string(ReasonBodyTooLarge),
					msg: fmt.Sprintf("request body is over %d bytes: at most %d accepted", limit, limit)}
			}
			code := http.StatusBadRequest
			if errors.Is(err, os.ErrDeadlineExceeded) {
				code = http.StatusRequestTimeout
			}
			return nil, bp, release, &badRequest{code: code, reason: string(ReasonReadError), msg: "read request body: " + err.Error()}
		}
	}
	*bp = buf
	return buf, bp, release, nil
}

// errOverloaded is a 429: the server is at one of its caps.
func errOverloaded(msg string) error {
	return &badRequest{code: http.StatusTooManyRequests, reason: string(ReasonOverloaded), msg: msg}
}

func (s *Server) putOutBuf(b *bytes.Buffer) {
	if b.Cap() > maxPooledBody {
		return
	}
	b.Reset()
	s.outBufs.Put(b)
}

func (s *Server) putBuf(bp *[]byte) {
	// Only the first-size buffers: readBody counts a pooled buffer as
	// free of the body budget.
	if bp == nil || cap(*bp) > 16<<10 {
		return
	}
	*bp = (*bp)[:0]
	s.bufs.Put(bp)
}

// writeJSON writes a complete JSON answer.
func writeJSON(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
