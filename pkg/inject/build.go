package inject

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/sidecar-injector/envoy"
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

	if err := checkNames(work); err != nil {
		return Result{}, err
	}
	if err := in.checkUID(work); err != nil {
		return Result{}, err
	}
	set, err := parseSettings(work.Annotations, cfg.Injection.AllowedSettings)
	if err != nil {
		return Result{}, err
	}

	var warnings []string
	pp := collectPorts(work)
	ports := Ports{Admin: cfg.Ports.Admin}
	inbound := portChoice{name: "inbound", want: cfg.Ports.Inbound, got: &ports.Inbound}
	if set.inboundPort != 0 {
		inbound.want, inbound.requested = set.inboundPort, SettingPrefix+SettingInboundPort
	}
	outbound := portChoice{name: "outbound", want: cfg.Ports.Outbound, got: &ports.Outbound}
	if set.outboundPort != 0 {
		outbound.want, outbound.requested = set.outboundPort, SettingPrefix+SettingOutboundPort
	}
	stats := portChoice{name: "stats", want: cfg.Ports.Stats, got: &ports.Stats}
	moved, err := in.choosePorts(pp, []portChoice{inbound, outbound, stats})
	if err != nil {
		return Result{}, err
	}
	if len(moved) > 0 {
		warnings = append(warnings, movedWarning(moved))
	}
	if u, clash := pp.used[cfg.Ports.Admin]; clash {
		warnings = append(warnings, fmt.Sprintf("%s uses port %d, which Envoy's admin interface binds on 127.0.0.1", u, cfg.Ports.Admin))
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

	if native {
		p.insertInitContainers(0, initC, proxy)
	} else {
		p.appendInitContainer(initC)
		p.insertContainer(0, proxy)
	}
	p.appendVolume(corev1.Volume{
		Name: ConfigVolumeName,
		VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName},
		}},
	})
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

func (in *Injector) initContainer(spec redirect.Spec) corev1.Container {
	return corev1.Container{
		Name:            InitContainerName,
		Image:           in.cfg.Proxy.InitImage,
		ImagePullPolicy: in.cfg.Proxy.ImagePullPolicy,
		Args:            spec.Args(),
		Resources:       in.cfg.Proxy.InitResources,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsGroup:               ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			Privileged:               ptr(false),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
}

func (in *Injector) proxyContainer(set settings, ports Ports, pp podPorts, spec redirect.Spec, native bool, ov Overrides) (corev1.Container, *Error) {
	cfg := &in.cfg
	md := envoy.NodeMetadata{
		Version:         envoy.MetadataVersion,
		InboundPort:     uint32(ports.Inbound),
		OutboundPort:    uint32(ports.Outbound),
		StatsPort:       uint32(ports.Stats),
		AdminPort:       uint32(ports.Admin),
		AppPorts:        pp.app,
		PodIP:           envoy.PodIPRef,
		IPv6:            string(spec.IPv6),
		ConfigHash:      in.hash,
		InjectorVersion: ov.InjectorVersion,
	}
	for _, p := range spec.ExcludeInboundPorts.Ports {
		md.ExcludeInboundPorts = append(md.ExcludeInboundPorts, uint32(p))
	}
	overlay, err := envoy.RenderOverlay(md)
	if err != nil {
		return corev1.Container{}, denyf(ReasonInvalidPod, "pod", "%v", err)
	}
	logLevel := cfg.Proxy.LogLevel
	if set.logLevel != "" {
		logLevel = set.logLevel
	}
	image := cfg.Proxy.Image
	if set.image != "" {
		image = set.image
	}
	res := *cfg.Proxy.Resources.DeepCopy()
	setResource(&res, corev1.ResourceCPU, set.cpu)
	setResource(&res, corev1.ResourceMemory, set.memory)

	uid := cfg.Proxy.UID
	gid := uid
	if cfg.Proxy.GID != nil {
		gid = *cfg.Proxy.GID
	}
	ready := &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: readyPath, Port: intstr.FromInt32(int32(ports.Stats)),
		}},
		PeriodSeconds:    2,
		TimeoutSeconds:   1,
		FailureThreshold: 3,
	}
	c := corev1.Container{
		Name:  ProxyContainerName,
		Image: image,
		Args: []string{
			"-c", ConfigMountPath + "/" + ConfigMapKey,
			"--config-yaml", overlay,
			"--log-level", logLevel,
			"--concurrency", strconv.Itoa(int(concurrency(cfg.Proxy.Concurrency, res))),
		},
		ImagePullPolicy: cfg.Proxy.ImagePullPolicy,
		Ports: []corev1.ContainerPort{{
			Name: "http-envoy-prom", ContainerPort: int32(ports.Stats), Protocol: corev1.ProtocolTCP,
		}},
		Env: []corev1.EnvVar{
			fieldEnv(envoy.EnvPodName, "metadata.name"),
			fieldEnv(envoy.EnvPodNamespace, "metadata.namespace"),
			fieldEnv(envoy.EnvPodIP, "status.podIP"),
		},
		Resources: res,
		VolumeMounts: []corev1.VolumeMount{{
			Name: ConfigVolumeName, MountPath: ConfigMountPath, ReadOnly: true,
		}},
		ReadinessProbe: ready,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(uid),
			RunAsGroup:               ptr(gid),
			RunAsNonRoot:             ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Privileged:               ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}
	if native {
		always := corev1.ContainerRestartPolicyAlways
		c.RestartPolicy = &always
		startup := *ready
		startup.PeriodSeconds, startup.FailureThreshold = 1, 60
		c.StartupProbe = &startup
	} else {
		// Classic sidecar: hold the app containers back until Envoy is
		// ready (the kubelet starts containers in order and runs postStart
		// before the next one).
		c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{
			Exec: &corev1.ExecAction{Command: waitReadyCommand(ports.Admin)},
		}}
	}
	return c, nil
}

// readyPath is Envoy's readiness endpoint; the stats listener serves it
// next to /stats/prometheus, so the kubelet can probe it on the stats port.
const readyPath = "/ready"

// waitReadyCommand blocks until Envoy's admin interface says LIVE, for at
// most 120 s. It uses only bash (the Envoy image has it, with /dev/tcp).
func waitReadyCommand(adminPort uint16) []string {
	script := "for i in $(seq 1 600); do " +
		"if exec 3<>/dev/tcp/127.0.0.1/" + strconv.Itoa(int(adminPort)) + " 2>/dev/null && " +
		"printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q LIVE <&3; then exit 0; fi; " +
		"exec 3>&- 3<&-; sleep 0.2; done; echo 'envoy not ready after 120s' >&2; exit 1"
	return []string{"bash", "-c", script}
}

// setResource sets the request of name to q, raising the limit to match
// when it is lower.
func setResource(res *corev1.ResourceRequirements, name corev1.ResourceName, q *resource.Quantity) {
	if q == nil {
		return
	}
	if res.Requests == nil {
		res.Requests = corev1.ResourceList{}
	}
	res.Requests[name] = *q
	if l, ok := res.Limits[name]; ok && l.Cmp(*q) < 0 {
		res.Limits[name] = *q
	}
}

// concurrency is Envoy's worker count: the config's, else the CPU limit (or
// request) rounded up, at least 1.
func concurrency(configured int32, res corev1.ResourceRequirements) int32 {
	if configured > 0 {
		return configured
	}
	q, ok := res.Limits[corev1.ResourceCPU]
	if !ok {
		q, ok = res.Requests[corev1.ResourceCPU]
	}
	if !ok {
		return 2
	}
	n := (q.MilliValue() + 999) / 1000
	return int32(max(1, min(n, 64)))
}

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path},
	}}
}

func ptr[T any](v T) *T { return &v }
