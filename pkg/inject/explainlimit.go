package inject

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// ErrTooManyPods is returned by ExplainLimited when the stream holds more
// pods and pod templates than allowed.
var ErrTooManyPods = errors.New("too many pods")

// ExplainLimited is Explain for a server: it stops at the first pod past
// maxPods (ErrTooManyPods; 0: no limit) and as soon as ctx is done (the
// client left), between documents and between pods.
func (in *Injector) ExplainLimited(ctx context.Context, data []byte, ov Overrides, maxPods int) ([]Explanation, error) {
	docs, err := ReadDocuments(data)
	if err != nil {
		return nil, err
	}
	out := []Explanation{}
	for i := range docs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := EachPod(&docs[i], func(w Workload, pod *corev1.Pod) (Patch, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if maxPods > 0 && len(out) == maxPods {
				return nil, fmt.Errorf("%w: at most %d per request", ErrTooManyPods, maxPods)
			}
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
