package controller

import (
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/sidecar-injector/sidecar-injector/envoy"
	"github.com/sidecar-injector/sidecar-injector/pkg/inject"
	"github.com/sidecar-injector/sidecar-injector/pkg/nsview"
)

// ConfigSource gives the injector config in use; the webhook reloads it
// from its file, the CLI loads it once.
type ConfigSource interface {
	// Injector returns the injector in use; nil before a config is loaded.
	Injector() *inject.Injector
}

// ConfigSourceFunc adapts a function to ConfigSource.
type ConfigSourceFunc func() *inject.Injector

// Injector calls f.
func (f ConfigSourceFunc) Injector() *inject.Injector { return f() }

// StaticConfig is a ConfigSource that never changes.
func StaticConfig(in *inject.Injector) ConfigSource {
	return ConfigSourceFunc(func() *inject.Injector { return in })
}

// BootstrapFor is the bootstrap of the envoy-config ConfigMap for an
// injector config: base (timeouts, TLS) with the xDS address and port from
// the config's xds section and the admin port from ports.admin.
//
// With xDS TLS on (xds.caCert, or xds.tls with the controller's
// --xds-ca-file), Envoy talks TLS to the xDS server and verifies it
// against the CA the ConfigMap carries under XDSCAKey (mounted with the
// bootstrap).
func BootstrapFor(base envoy.BootstrapConfig, cfg *inject.Config) envoy.BootstrapConfig {
	b := base
	b.XDSAddress = cfg.XDS.Address
	b.XDSPort = uint32(cfg.XDS.Port)
	b.AdminPort = uint32(cfg.Ports.Admin)
	if cfg.XDS.TLSEnabled() {
		b.XDSTLS = &envoy.XDSTLS{CAFile: inject.ConfigMountPath + "/" + XDSCAKey}
	}
	return b
}

// XDSCAKey is the envoy-config key of the CA that signs the xDS server's
// certificate (the --xds-ca-file content, else xds.caCert of the injector
// config).
const XDSCAKey = "xds-ca.crt"

// desired is what the controller works from: one injector config and the
// envoy-config content rendered from it.
type desired struct {
	injector *inject.Injector
	fileCA   string // the --xds-ca-file content it was made with ("" without)
	cfg      inject.Config
	hash     string
	data     map[string]string // the ConfigMap's data: envoy.yaml (and xds-ca.crt)
}

// newDesired renders the envoy-config content of an injector config.
// fileCA, when set, is the xDS CA in place of xds.caCert; it is used only
// when the config has xDS TLS on.
func newDesired(in *inject.Injector, base envoy.BootstrapConfig, fileCA string) (*desired, error) {
	cfg := in.Config()
	data := map[string]string{}
	if cfg.XDS.TLSEnabled() {
		ca := cfg.XDS.CACert
		if fileCA != "" {
			ca = fileCA
		}
		if ca == "" {
			return nil, fmt.Errorf("injector config %s has xds.tls on but no CA: give the controller --xds-ca-file (the CA that signs the xDS server's certificate) or set xds.caCert", in.Hash())
		}
		data[XDSCAKey] = ca
	}
	y, err := envoy.RenderBootstrap(BootstrapFor(base, &cfg))
	if err != nil {
		return nil, fmt.Errorf("render the envoy-config bootstrap for injector config %s: %w", in.Hash(), err)
	}
	data[inject.ConfigMapKey] = string(y)
	return &desired{injector: in, fileCA: fileCA, cfg: cfg, hash: in.Hash(), data: data}, nil
}

// ourLabels are the labels of the ConfigMaps we make.
func ourLabels() map[string]string {
	return map[string]string{nsview.ManagedByLabel: nsview.ManagedByValue}
}

// applyConfig is the server-side apply request for ns's envoy-config,
// owned by owner when not nil. With resourceVersion set the apply fails if
// the object changed since (an optimistic lock: we never overwrite what we
// have not seen as ours).
func (d *desired) applyConfig(ns, resourceVersion string, owner *metav1.OwnerReference) *corev1ac.ConfigMapApplyConfiguration {
	ac := corev1ac.ConfigMap(inject.ConfigMapName, ns).
		WithLabels(ourLabels()).
		WithData(maps.Clone(d.data))
	if owner != nil {
		// No blockOwnerDeletion: the owner is deleted first and the garbage
		// collector follows (background), which needs no extra permission.
		ac = ac.WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion(owner.APIVersion).WithKind(owner.Kind).WithName(owner.Name).WithUID(owner.UID))
	}
	if resourceVersion != "" {
		ac = ac.WithResourceVersion(resourceVersion)
	}
	return ac
}

// upToDate says whether cm already holds what we would apply, owner
// included: then no write at all (not even a no-op apply) happens. Keys,
// labels or owners others added are theirs: server-side apply leaves them,
// and so does this check.
func (d *desired) upToDate(cm *corev1.ConfigMap, owner *metav1.OwnerReference) bool {
	if cm == nil {
		return false
	}
	if owner != nil && !slices.ContainsFunc(cm.OwnerReferences, func(r metav1.OwnerReference) bool {
		return r.UID == owner.UID && r.Kind == owner.Kind && r.Name == owner.Name && r.APIVersion == owner.APIVersion
	}) {
		return false
	}
	for k, v := range d.data {
		if got, ok := cm.Data[k]; !ok || got != v {
			return false
		}
	}
	for k, v := range ourLabels() {
		if cm.Labels[k] != v {
			return false
		}
	}
	return true
}
