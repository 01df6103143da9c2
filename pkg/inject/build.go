package inject

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// Prometheus scrape annotations added for Envoy's stats, unless the pod
// has any of its own.
const (
	promScrape = "prometheus.io/scrape"
	promPort   = "prometheus.io/port"
	promPath   = "prometheus.io/path"
	statsPath  = "/stats/prometheus"
)

// build computes everything for a pod that gets a sidecar: it checks the pod,
// chooses ports, builds the containers and the patch.
func (in *Injector) build(pod *corev1.Pod, d decision, ov Overrides) (Result, *Error) {
	cfg := &in.cfg
	if len(pod.Spec.Containers) == 0 {
		return Result{}, denyf(ReasonInvalidPod, "spec.containers", "the pod has no containers")
	}
	p := newPatcher(pod)
	if d.status != nil {
		p.removeInjected(d.status)
	}
	work := p.pod // the pod without anything an older injection added

	if err := checkOtherMesh(work); err != nil {
		return Result{}, err
	}
	if err := checkNames(work); err != nil {
		return Result{}, err
	}
	if err := in.checkUID(work); err != nil {
		return Result{}, err
	}
	set, err := parseSettings(work.Annotations, cfg.Injection.AllowedSettings, cfg.Proxy)
	if err != nil {
		return Result{}, err
	}

	warnings := d.warnings
	pp := collectPorts(work)
	var ports Ports
	inbound := portChoice{name: "inbound", want: cfg.Ports.Inbound, got: &ports.Inbound}
	if set.inboundPort != 0 {
		inbound.want, inbound.requested = set.inboundPort, SettingPrefix+SettingInboundPort
	}
	outbound := portChoice{name: "outbound", want: cfg.Ports.Outbound, got: &ports.Outbound}
	if set.outboundPort != 0 {
		outbound.want, outbound.requested = set.outboundPort, SettingPrefix+SettingOutboundPort
	}
	stats := portChoice{name: "stats", want: cfg.Ports.Stats, got: &ports.Stats}
	// Envoy's admin interface binds 127.0.0.1: an app port of the same
	// number would keep Envoy from starting, so it moves like the others.
	admin := portChoice{name: "admin", want: cfg.Ports.Admin, got: &ports.Admin}
	moved, err := in.choosePorts(pp, []portChoice{inbound, outbound, stats, admin})
	if err != nil {
		return Result{}, err
	}
	if len(moved) > 0 {
		warnings = append(warnings, movedWarning(moved))
	}

	spec, warn, err := in.redirectSpec(set, ports, pp)
	if err != nil {
		return Result{}, err
	}
	warnings = append(warnings, warn...)

	native := in.native(set, ov)
	status := &Status{
		Version:    ov.InjectorVersion,
		ConfigHash: in.hash,
		Native:     native,
		Ports:      ports,
		Volumes:    []string{ConfigVolumeName},
	}
	if native {
		status.InitContainers = []string{InitContainerName, ProxyContainerName}
	} else {
		status.InitContainers = []string{InitContainerName}
		status.Containers = []string{ProxyContainerName}
	}

	initC := in.initContainer(spec)
	if runAsNonRoot(work) {
		warnings = append(warnings, "the pod sets runAsNonRoot: true; "+InitContainerName+" still runs as root (UID 0) to program iptables")
	}
	proxy, err := in.proxyContainer(set, ports, pp, spec, native, ov)
	if err != nil {
		return Result{}, err
	}

	initJ := injected{c: initC, enc: in.enc.init}
	proxyJ := injected{c: proxy, enc: in.proxyJSON(set, ports, native)}
	if native {
		p.insertInitContainers(0, initJ, proxyJ)
	} else {
		p.appendInitContainer(initJ)
		p.insertContainer(0, proxyJ)
	}
	p.appendVolume(configVolume(), in.enc.volumeList, in.enc.volume)
	if cfg.Injection.PrometheusAnnotations && !hasPrometheusAnnotations(work) {
		p.setAnnotation(promScrape, "true")
		p.setAnnotation(promPort, strconv.Itoa(int(ports.Stats)))
		p.setAnnotation(promPath, statsPath)
		status.Annotations = []string{promScrape, promPort, promPath}
	}
	p.setAnnotation(StatusAnnotation, status.encode())

	return Result{
		Decision: DecisionInject,
		Reason:   d.reason,
		Message:  d.message,
		Warnings: warnings,
		Audit:    d.audit,
		Status:   status,
		Patch:    p.ops,
		Pod:      p.pod,
	}, nil
}

// configVolume is the volume of the Envoy bootstrap ConfigMap.
func configVolume() corev1.Volume {
	return corev1.Volume{
		Name: ConfigVolumeName,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName},
		}},
	}
}

// otherMeshContainers are the proxy and init containers other meshes
// inject, by mesh. A pod carrying one already has a proxy and redirection
// rules of its own: a second proxy would fight it for the pod's traffic.
var otherMeshContainers = []struct{ mesh, container string }{
	{"Istio", "istio-proxy"}, {"Istio", "istio-init"}, {"Istio", "istio-validation"},
	{"Linkerd", "linkerd-proxy"}, {"Linkerd", "linkerd-init"}, {"Linkerd", "linkerd-network-validator"},
	{"Kuma", "kuma-sidecar"}, {"Kuma", "kuma-init"}, {"Kuma", "kuma-validation"},
	{"Consul", "consul-dataplane"}, {"Consul", "consul-connect-inject-init"}, {"Consul", "consul-connect-envoy-sidecar"}, {"Consul", "envoy-sidecar"},
	{"Open Service Mesh", "osm-init"},
	{"AWS App Mesh", "proxyinit"},
}

// checkOtherMesh refuses a pod that already carries another mesh's proxy
// or init container, naming it. It runs before the UID check: Istio's
// proxy runs as 1337 too, and "runs as the proxy UID" would mislead.
func checkOtherMesh(pod *corev1.Pod) *Error {
	for _, list := range []struct {
		field string
		cs    []corev1.Container
	}{{"spec.initContainers", pod.Spec.InitContainers}, {"spec.containers", pod.Spec.Containers}} {
		for i, c := range list.cs {
			for _, m := range otherMeshContainers {
				if c.Name == m.container {
					return denyf(ReasonOtherMesh, fmt.Sprintf("%s[%d]", list.field, i), "container %q is %s's; the pod is already in another mesh and cannot get a second proxy: opt it out of one of them (sidecar.io/inject: \"false\")", c.Name, m.mesh)
				}
			}
		}
	}
	return nil
}

// checkNames refuses a pod that already has a container or volume with one
// of our names (and no status of ours listing it).
func checkNames(pod *corev1.Pod) *Error {
	for i, c := range pod.Spec.InitContainers {
		if c.Name == InitContainerName || c.Name == ProxyContainerName {
			return denyf(ReasonNameConflict, fmt.Sprintf("spec.initContainers[%d]", i), "a container named %q already exists and the pod has no %s annotation; rename it (the name is reserved for the injected sidecar)", c.Name, StatusAnnotation)
		}
	}
	for i, c := range pod.Spec.Containers {
		if c.Name == InitContainerName || c.Name == ProxyContainerName {
			return denyf(ReasonNameConflict, fmt.Sprintf("spec.containers[%d]", i), "a container named %q already exists and the pod has no %s annotation; rename it (the name is reserved for the injected sidecar)", c.Name, StatusAnnotation)
		}
	}
	for i, v := range pod.Spec.Volumes {
		if v.Name == ConfigVolumeName {
			return denyf(ReasonNameConflict, fmt.Sprintf("spec.volumes[%d]", i), "a volume named %q already exists; rename it (the name is reserved for the Envoy bootstrap)", v.Name)
		}
	}
	return nil
}

// checkUID refuses a pod whose app would run as the proxy UID: its traffic
// would bypass the proxy (and the proxy's would loop through the app).
func (in *Injector) checkUID(pod *corev1.Pod) *Error {
	uid := in.cfg.Proxy.UID
	var podUID *int64
	if sc := pod.Spec.SecurityContext; sc != nil {
		podUID = sc.RunAsUser
	}
	check := func(list string, i int, c *corev1.Container) *Error {
		effective := podUID
		where := "spec.securityContext.runAsUser"
		if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
			effective, where = c.SecurityContext.RunAsUser, ""
		}
		if effective == nil || *effective != uid {
			return nil
		}
		if where == "" {
			where = fmt.Sprintf("spec.%s[%d].securityContext.runAsUser", list, i)
		}
		return denyf(ReasonProxyUIDConflict, where, "container %q would run as UID %d, the proxy's UID, whose traffic is never redirected; run the app as another UID", c.Name, uid)
	}
	for i := range pod.Spec.InitContainers {
		if err := check("initContainers", i, &pod.Spec.InitContainers[i]); err != nil {
			return err
		}
	}
	for i := range pod.Spec.Containers {
		if err := check("containers", i, &pod.Spec.Containers[i]); err != nil {
			return err
		}
	}
	return nil
}

func runAsNonRoot(pod *corev1.Pod) bool {
	sc := pod.Spec.SecurityContext
	return sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot
}

func hasPrometheusAnnotations(pod *corev1.Pod) bool {
	for _, k := range []string{promScrape, promPort, promPath} {
		if _, ok := pod.Annotations[k]; ok {
			return true
		}
	}
	return false
}

// redirectSpec merges the config defaults, the pod's settings and the ports
// chosen into the iptables-init spec.
func (in *Injector) redirectSpec(set settings, ports Ports, pp podPorts) (redirect.Spec, []string, *Error) {
	cfg := &in.cfg
	spec := redirect.DefaultSpec()
	spec.InboundPort, spec.OutboundPort = ports.Inbound, ports.Outbound
	spec.ProxyUID = uint32(cfg.Proxy.UID)
	if cfg.Proxy.GID != nil {
		gid := uint32(*cfg.Proxy.GID)
		spec.ProxyGID = &gid
	}
	spec.Mode, spec.IPv6 = cfg.Redirect.IPTablesMode, cfg.Redirect.IPv6
	if set.ipv6 != "" {
		spec.IPv6 = set.ipv6
	}
	spec.ExcludeOutboundCIDRs = in.excludeOutboundCIDRs
	spec.ExcludeOutboundPorts = in.excludeOutboundPorts
	if set.includeInboundPorts != nil {
		spec.IncludeInboundPorts = *set.includeInboundPorts
	}
	if set.excludeOutboundPorts != nil {
		spec.ExcludeOutboundPorts = *set.excludeOutboundPorts
	}
	if set.excludeOutboundCIDRs != nil {
		spec.ExcludeOutboundCIDRs = *set.excludeOutboundCIDRs
	}
	if set.includeOutboundCIDRs != nil {
		spec.IncludeOutboundCIDRs = *set.includeOutboundCIDRs
	}

	// Inbound exclusions: config, setting, Envoy's stats port (scraped
	// directly) and ports only tcpSocket probes use.
	exclude := slices.Clone(in.excludeInboundPorts.Ports)
	if set.excludeInboundPorts != nil {
		exclude = append(exclude, set.excludeInboundPorts.Ports...)
	}
	exclude = append(exclude, ports.Stats)
	var warnings []string
	var served []uint16
	for port := range pp.tcpProbe {
		if pp.declared[port] {
			served = append(served, port)
		} else {
			exclude = append(exclude, port)
		}
	}
	if len(served) > 0 {
		slices.Sort(served)
		warnings = append(warnings, fmt.Sprintf("tcpSocket probe on port %d, which also serves traffic: it succeeds whenever Envoy is up", served[0]))
	}
	slices.Sort(exclude)
	spec.ExcludeInboundPorts = redirect.PortList{Ports: slices.Compact(exclude)}
	if set.includeInboundPorts != nil && !set.includeInboundPorts.All {
		for _, port := range []uint16{ports.Inbound, ports.Outbound, ports.Stats, ports.Admin} {
			if set.includeInboundPorts.Contains(port) {
				return spec, nil, denyf(ReasonInvalidSetting, "annotation "+SettingPrefix+SettingIncludeInboundPorts, "lists port %d, one of Envoy's own ports", port)
			}
		}
	}
	if err := spec.Validate(); err != nil {
		return spec, nil, specError(err, set)
	}
	return spec, warnings, nil
}

// specError names what the user wrote for a redirect spec problem: the
// sidecar.io/<setting> annotation when the pod set that field, else the
// injector config.
func specError(err error, set settings) *Error {
	var fe *redirect.FieldError
	if !errors.As(err, &fe) {
		return denyf(ReasonInvalidSetting, "sidecar.io/ settings", "%v", err)
	}
	if set.has(fe.Field) {
		return denyf(ReasonInvalidSetting, "annotation "+SettingPrefix+fe.Field, "%s", fe.Problem)
	}
	return denyf(ReasonInvalidSetting, "injector config", "iptables-init --%s=%q: %s", fe.Field, fe.Value, fe.Problem)
}

func (in *Injector) native(set settings, ov Overrides) bool {
	mode := in.cfg.Proxy.NativeSidecar
	if set.native != "" {
		mode = set.native
	}
	switch mode {
	case NativeTrue:
		return true
	case NativeFalse:
		return false
	}
	return ov.NativeSidecarSupported == nil || *ov.NativeSidecarSupported
}
