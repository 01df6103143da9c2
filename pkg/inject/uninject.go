package inject

import (
	corev1 "k8s.io/api/core/v1"
)

// Uninject returns the patch that removes exactly what the pod's status
// annotation says the injector added, and the status itself. A pod without
// a status is left alone (empty patch). A malformed status is an error
// naming the annotation: guessing what to remove could delete the user's own
// containers.
func Uninject(pod *corev1.Pod) (Result, error) {
	s, ok := pod.Annotations[StatusAnnotation]
	if !ok {
		return Result{Decision: DecisionSkip, Message: "not injected: no " + StatusAnnotation + " annotation", Patch: Patch{}, Pod: pod}, nil
	}
	st, err := ParseStatus(s)
	if err != nil {
		return deny(denyf(ReasonInvalidPod, "annotation "+StatusAnnotation, "%q: %s; remove the annotation and the containers it lists by hand", truncate(s), statusProblem(err)))
	}
	p := newPatcher(pod)
	p.removeInjected(st)
	p.removeStatus()
	p.dropEmptied(pod)
	return Result{Decision: DecisionInject, Message: "sidecar removed", Status: st, Patch: p.ops, Pod: p.pod}, nil
}
