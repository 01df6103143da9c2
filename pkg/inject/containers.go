package inject

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
	"github.com/sidecar-injector/sidecar-injector/pkg/redirect"
)

// The two containers the injector adds, built as typed corev1 values.

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
	md := nodemeta.Metadata{
		Version:         nodemeta.Version,
		InboundPort:     uint32(ports.Inbound),
		OutboundPort:    uint32(ports.Outbound),
		StatsPort:       uint32(ports.Stats),
		AdminPort:       uint32(ports.Admin),
		AppPorts:        pp.app,
		PodIP:           nodemeta.PodIPRef,
		IPv6:            string(spec.IPv6),
		ConfigHash:      in.hash,
		InjectorVersion: ov.InjectorVersion,
	}
	for _, p := range spec.ExcludeInboundPorts.Ports {
		md.ExcludeInboundPorts = append(md.ExcludeInboundPorts, uint32(p))
	}
	overlay, err := nodemeta.RenderOverlayMovedAdmin(md, uint32(cfg.Ports.Admin))
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
	var res corev1.ResourceRequirements
	cfg.Proxy.Resources.DeepCopyInto(&res)
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
			fieldEnv(nodemeta.EnvPodName, "metadata.name"),
			fieldEnv(nodemeta.EnvPodNamespace, "metadata.namespace"),
			fieldEnv(nodemeta.EnvPodIP, "status.podIP"),
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
