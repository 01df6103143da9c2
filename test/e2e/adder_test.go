//go:build e2e

package e2e

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/test/testenv"
)

// adderContainer is the container the second webhook adds.
const adderContainer = "log-shipper"

// adder is a second mutating webhook, as another add-on would install: it
// adds a container to every pod that lacks it.
type adder struct {
	url string
	ca  []byte
}

func startAdder(t *testing.T) *adder {
	t.Helper()
	kp, err := env.ca.Issue(testenv.LoopbackServing("adder", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(serveAdder),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("adder webhook: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return &adder{url: "https://" + ln.Addr().String() + "/add", ca: env.ca.CertPEM}
}

func serveAdder(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 7<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, "want an admission.k8s.io/v1 AdmissionReview", http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	var pod corev1.Pod
	if err := json.Unmarshal(review.Request.Object.Raw, &pod); err != nil {
		http.Error(w, "not a pod: "+err.Error(), http.StatusBadRequest)
		return
	}
	if count(containerNames(pod.Spec.Containers), adderContainer) == 0 {
		patch, err := json.Marshal([]map[string]any{{
			"op": "add", "path": "/spec/containers/-",
			"value": corev1.Container{Name: adderContainer, Image: "busybox:1.36", Command: []string{"sleep", "3600"}},
		}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// config registers the adder for every pod of scope; its name sorts after
// the injector's so it runs second.
func (a *adder) config(scope string) *admissionregistrationv1.MutatingWebhookConfiguration {
	none := admissionregistrationv1.SideEffectClassNone
	fail := admissionregistrationv1.Fail
	never := admissionregistrationv1.NeverReinvocationPolicy
	timeout := int32(5)
	return scoped(&admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-adder"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "add.e2e.sidecar.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &a.url, CABundle: a.ca},
			AdmissionReviewVersions: []string{"v1"},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:  &metav1.LabelSelector{},
			SideEffects:        &none,
			FailurePolicy:      &fail,
			ReinvocationPolicy: &never,
			TimeoutSeconds:     &timeout,
		}},
	}, scope)
}
