package webhook

import (
	"bytes"
	"context"
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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/internal/stack"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
)

// maxPooledBody is the largest body buffer kept for reuse; bigger ones (rare:
// pods are a few KiB) go to the garbage collector so the pool never pins
// megabytes.
const maxPooledBody = 256 << 10

// subject is what a review is about: the fields of its log line that come
// from the request.
type subject struct {
	uid       string
	namespace string
	pod       string // name, else generateName
	operation string
	dryRun    bool
}

// verdict is what one review came to: its admission response, built by the
// constructors below, and what it is counted and logged as.
type verdict struct {
	result   Result
	reason   inject.Reason
	allowed  bool
	status   *statusOut
	patch    []byte // a JSON Patch; allowed answers only
	warnings []string
	message  string // a deny's message, for the log line
	audit    bool   // an audit-mode decision: reported, nothing applied
}

// allowed answers allowed, unchanged, counted as result for reason. The
// warnings are limited to what an answer may carry.
func allowed(result Result, reason inject.Reason, warnings []string) verdict {
	return verdict{result: result, reason: reason, allowed: true, warnings: limitWarnings(warnings)}
}

// patched answers allowed with the JSON Patch that adds the sidecar.
func patched(reason inject.Reason, patch []byte, warnings []string) verdict {
	a := allowed(ResultInjected, reason, warnings)
	if len(patch) > 0 && string(patch) != "[]" && string(patch) != "null" {
		a.patch = patch
	}
	return a
}

// denied answers allowed: false with an HTTP-like code and the message
// kubectl prints.
func denied(reason inject.Reason, code int32, msg string, warnings []string) verdict {
	return verdict{result: ResultDenied, reason: reason, message: msg, warnings: limitWarnings(warnings),
		status: &statusOut{Status: "Failure", Message: sanitize(msg, 4096), Reason: statusReason(code), Code: code}}
}

// audited answers allowed, unchanged: the decision is reported in the
// warnings, the first of which says what /mutate would have done.
func audited(reason inject.Reason, warnings []string) verdict {
	a := allowed(ResultAudited, reason, warnings)
	a.audit = true
	return a
}

// badObject denies a pod CREATE whose object cannot be admitted: code 400,
// the field named.
func badObject(reason inject.Reason, msg string) verdict {
	return denied(reason, 400, "sidecar-injector: "+msg, nil)
}

// internalError denies with code 500, counted as result error.
func internalError(reason inject.Reason, msg string) verdict {
	a := denied(reason, 500, msg, nil)
	a.result = ResultError
	return a
}

// reviewOut is the AdmissionReview that carries a.
func (a *verdict) reviewOut(rev *reviewIn) *reviewOut {
	out := &reviewOut{APIVersion: rev.APIVersion, Kind: reviewKind, Response: responseOut{
		UID: rev.Request.UID, Allowed: a.allowed, Status: a.status, Warnings: a.warnings,
	}}
	if a.allowed && len(a.patch) > 0 {
		out.Response.PatchType, out.Response.Patch = "JSONPatch", a.patch
	}
	return out
}

// decider decides one well-formed review about sub; a patch is written into
// patchBuf, a pooled buffer returned once the answer is written.
type decider func(rev *reviewIn, sub *subject, patchBuf *bytes.Buffer) verdict

// serveMutate answers POST /mutate: inject, or say why not.
func (s *Server) serveMutate(w http.ResponseWriter, r *http.Request) {
	s.serveReview(w, r, s.admitMutate)
}

// serveAudit answers POST /audit: decide and report, never patch.
func (s *Server) serveAudit(w http.ResponseWriter, r *http.Request) {
	s.serveReview(w, r, func(rev *reviewIn, sub *subject, _ *bytes.Buffer) verdict { return s.admitAudit(rev, sub) })
}

// serveInvalidLabel answers POST /invalid-namespace-label: warn, never
// patch.
func (s *Server) serveInvalidLabel(w http.ResponseWriter, r *http.Request) {
	s.serveReview(w, r, func(rev *reviewIn, sub *subject, _ *bytes.Buffer) verdict { return s.admitInvalidLabel(rev, sub) })
}

// serveReview is what the three review paths share: reading, decoding, the
// answer, its metric and its log line around their own decide.
func (s *Server) serveReview(w http.ResponseWriter, r *http.Request, decide decider) {
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
	pb := s.outBufs.Get().(*bytes.Buffer)
	defer s.putOutBuf(pb)
	sub := subjectOf(rev.Request)
	a := s.recovered(rev, func() verdict { return decide(rev, &sub, pb) })
	s.writeAnswer(w, r, rev, sub, a, start)
}

// handlerStack is the stack room a request's goroutine asks for before the
// router runs (growFirst): the runtime then gives it a 16 KiB stack, in
// which decoding and admitting the kit's pod fits (a CPU profile shows no
// further growth); a deeper pod grows it once more. Each HTTP/2 stream runs
// on a new goroutine whose stack starts at 8 KiB: the decoder's recursion
// grew it twice per request (5-6% of the webhook's CPU in a profile at
// c=16). Growing copies the stack and adjusts every frame on it, so it is
// done while the fewest frames are: before the router, not in the handler
// (4.0% of the CPU there).
type handlerStack = [12 << 10]byte

// growFirst grows the request goroutine's stack (handlerStack) before next
// runs.
func growFirst(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stack.Grow[handlerStack]()
		next.ServeHTTP(w, r)
	})
}

// writeAnswer writes a, counts it and logs its line.
func (s *Server) writeAnswer(w http.ResponseWriter, r *http.Request, rev *reviewIn, sub subject, a verdict, start time.Time) {
	ob := s.outBufs.Get().(*bytes.Buffer)
	defer s.putOutBuf(ob)
	ob.Write(a.reviewOut(rev).appendJSON(ob.AvailableBuffer()))
	writeJSON(w, http.StatusOK, ob.Bytes())
	elapsed := s.now().Sub(start)
	s.metrics.observe(a.result, a.reason, elapsed.Seconds())
	s.logDecision(r.Context(), sub, &a, elapsed)
}

// recovered runs admit; a panic in it is answered with a deny carrying
// the uid.
func (s *Server) recovered(rev *reviewIn, admit func() verdict) (a verdict) {
	defer func() {
		if p := recover(); p != nil {
			uid := rev.Request.UID
			s.metrics.panics.Inc()
			s.log.Error("panic while admitting; answered with a deny", "uid", uid, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			a = internalError(ReasonPanic, fmt.Sprintf("sidecar-injector: internal error (recovered panic); request uid %s is in the webhook log", uid))
			a.message = "panic"
		}
	}()
	return admit()
}

func subjectOf(req *requestMeta) subject {
	sub := subject{uid: req.UID, namespace: req.Namespace, pod: req.Name, operation: req.Operation}
	if req.DryRun != nil {
		sub.dryRun = *req.DryRun
	}
	return sub
}

// admitMutate answers /mutate: the pod gets the engine's patch, or the
// engine's deny; a pod in an audit namespace is answered as /audit would.
func (s *Server) admitMutate(rev *reviewIn, sub *subject, patchBuf *bytes.Buffer) verdict {
	run, early, ok := s.runEngine(rev, sub)
	if !ok {
		return early
	}
	pod, res, err := run.pod, run.res, run.err
	if res.Audit {
		return s.auditAnswer(sub, res, err)
	}
	if err != nil {
		e, ok := inject.AsError(err)
		if !ok {
			s.log.Error("injection engine failed", "uid", sub.uid, "error", err)
			a := denied(ReasonInternal, 500, "sidecar-injector: "+err.Error(), nil)
			a.message = err.Error()
			return a
		}
		return denied(e.Reason, denyCode(e.Reason), "sidecar-injector: "+e.Error(), res.Warnings)
	}
	switch res.Decision {
	case inject.DecisionInject:
		patch, err := res.Patch.AppendJSON(patchBuf.AvailableBuffer())
		if err != nil {
			s.log.Error("encode the injection patch", "uid", sub.uid, "error", err)
			a := denied(ReasonInternal, 500, "sidecar-injector: encode the injection patch: "+err.Error(), nil)
			a.message = err.Error()
			return a
		}
		return patched(res.Reason, patch, append(s.namespaceWarnings(sub.namespace, res), res.Warnings...))
	case inject.DecisionDeny:
		// A deny without an *inject.Error: still a deny with the engine's words.
		return denied(res.Reason, denyCode(res.Reason), "sidecar-injector: "+res.Message, res.Warnings)
	}
	if s.skips != nil {
		s.skips.Skipped(Skip{Namespace: sub.namespace, Pod: sub.pod, Owner: metav1.GetControllerOf(pod),
			Reason: res.Reason, Message: res.Message, DryRun: sub.dryRun})
	}
	ws := res.Warnings
	if w := skipWarning(res); w != "" {
		ws = append([]string{w}, ws...)
	}
	return allowed(ResultSkipped, res.Reason, ws)
}

// admitAudit answers /audit: the decision /mutate would make, reported in
// a warning; the pod is never changed.
func (s *Server) admitAudit(rev *reviewIn, sub *subject) verdict {
	run, early, ok := s.runEngine(rev, sub)
	if !ok {
		early.audit = true // logged as an /audit request, answered as /mutate would
		return early
	}
	return s.auditAnswer(sub, run.res, run.err)
}

// auditAnswer reports the engine's outcome without applying it.
func (s *Server) auditAnswer(sub *subject, res inject.Result, err error) verdict {
	if err != nil {
		e, ok := inject.AsError(err)
		if !ok {
			return audited(ReasonInternal, []string{"sidecar audit: would fail: " + err.Error()})
		}
		return audited(e.Reason, append([]string{"sidecar audit: would deny (" + string(e.Reason) + "): " + e.Error()}, res.Warnings...))
	}
	ws := append([]string{auditWarning(res)}, s.namespaceWarnings(sub.namespace, res)...)
	return audited(res.Reason, append(ws, res.Warnings...))
}

// runEngine checks that a review is a pod CREATE the engine can take and
// runs the engine on its pod. Anything else is answered here (ok false):
// allowed untouched when it is not a pod CREATE, denied when its object
// cannot be admitted.
func (s *Server) runEngine(rev *reviewIn, sub *subject) (run engineRun, early verdict, ok bool) {
	req := rev.Request
	if reason, create := podCreate(req); !create {
		return run, allowed(ResultAllowed, reason, nil), false
	}
	pod, problem := rev.objectPod()
	switch {
	case problem != "":
		return run, badObject(ReasonBadObject, problem), false
	case pod.Kind != "" && pod.Kind != "Pod":
		return run, badObject(ReasonBadObject, "request.object.kind "+quote(pod.Kind)+": want Pod"), false
	case pod.APIVersion != "" && pod.APIVersion != "v1":
		return run, badObject(ReasonBadObject, "request.object.apiVersion "+quote(pod.APIVersion)+": want v1"), false
	case pod.Name == "" && pod.GenerateName == "":
		// Also a null or missing metadata: the patch could not add to it.
		return run, badObject(ReasonBadObject, "request.object.metadata: neither name nor generateName is set"), false
	}
	sub.nameFrom(pod)
	if req.Namespace == "" {
		return run, badObject(ReasonNoNamespace, "request.namespace is empty: a pod is always created in a namespace and the webhook never assumes default"), false
	}
	lc := s.config.get()
	ov := inject.Overrides{
		Namespace:              req.Namespace,
		NamespaceLabels:        nil, // the apiserver's namespaceSelector already decided
		NativeSidecarSupported: s.native,
		InjectorVersion:        s.version,
	}
	run.pod = pod
	run.res, run.err = s.inject(lc.injector, pod, ov)
	return run, verdict{}, true
}

// engineRun is the engine's outcome for a review's pod.
type engineRun struct {
	pod *corev1.Pod
	res inject.Result
	err error
}

// podCreate says whether a request is a pod CREATE; when not, the reason
// it is allowed untouched.
func podCreate(req *requestMeta) (inject.Reason, bool) {
	switch {
	case req.Kind.Group != "" || req.Kind.Kind != "Pod":
		return ReasonNotPod, false
	case req.SubResource != "":
		return ReasonSubresource, false
	case req.Operation != "CREATE":
		return ReasonNotCreate, false
	}
	return "", true
}

// nameFrom names the pod after its object when the request has no name.
func (sub *subject) nameFrom(pod *corev1.Pod) {
	if sub.pod == "" {
		sub.pod = pod.Name
	}
	if sub.pod == "" {
		sub.pod = pod.GenerateName
	}
}

// admitInvalidLabel answers a pod CREATE in a namespace whose
// sidecar-injection label is neither enabled, disabled nor audit (the
// chart's catch-all entry sends those here): allowed, no patch, and a
// warning naming the label, its value (from the namespace cache, when it
// has seen it) and the valid values. Anything else is allowed untouched.
func (s *Server) admitInvalidLabel(rev *reviewIn, sub *subject) verdict {
	req := rev.Request
	if reason, create := podCreate(req); !create {
		return allowed(ResultAllowed, reason, nil)
	}
	if pod, problem := rev.objectPod(); problem == "" {
		sub.nameFrom(pod)
	}
	msg := "namespace label " + inject.NamespaceLabel + " is invalid (valid: enabled, disabled, audit)"
	if s.labels != nil {
		// The cache may lag a relabel: name the value only when it is
		// itself invalid, so the warning never calls "enabled" wrong.
		if v, ok := s.labels.NamespaceLabel(req.Namespace); ok && v != "enabled" && v != "disabled" && v != "audit" {
			msg = inject.InvalidNamespaceLabel(v)
		}
	}
	return allowed(ResultSkipped, inject.ReasonNamespaceLabelInvalid, []string{"no sidecar: " + msg})
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

// logDecision writes the one log line of a decision. It hands the record
// to the handler itself: Logger.LogAttrs would also walk the stack for a
// source location the handler does not print.
func (s *Server) logDecision(ctx context.Context, sub subject, a *verdict, elapsed time.Duration) {
	level := slog.LevelInfo
	if a.result == ResultAllowed {
		level = slog.LevelDebug // not a pod CREATE: the webhook rules should not even send these
	}
	h := s.log.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	rec := slog.NewRecord(time.Now(), level, "admission", 0)
	rec.AddAttrs(
		slog.String("uid", sub.uid),
		slog.String("namespace", sub.namespace),
		slog.String("pod", sub.pod),
		slog.String("operation", sub.operation),
		slog.String("decision", string(a.result)), // the result label of the metric
		slog.String("reason", string(a.reason)),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
	)
	if sub.dryRun {
		rec.AddAttrs(slog.Bool("dry_run", true))
	}
	if a.audit {
		rec.AddAttrs(slog.Bool("audit", true))
	}
	if len(a.warnings) > 0 {
		rec.AddAttrs(slog.Int("warnings", len(a.warnings)))
	}
	if a.message != "" {
		rec.AddAttrs(slog.String("message", a.message))
	}
	_ = h.Handle(ctx, rec)
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
