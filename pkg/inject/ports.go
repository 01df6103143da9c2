package inject

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sidecar-injector/sidecar-injector/envoy/nodemeta"
)

// podPorts is what the pod's own containers use, collected in one pass.
type podPorts struct {
	used     map[uint16]portUse // every port the app uses, with what uses it (for messages)
	declared map[uint16]bool    // declared containerPorts (serving ports)
	tcpProbe map[uint16]bool    // ports of tcpSocket probes
	app      []nodemeta.AppPort // declared TCP ports, sorted, for the xDS server
}

// collectPorts walks every container's ports, hostPorts and probes. Linear in
// the number of containers, ports and probes.
func collectPorts(pod *corev1.Pod) podPorts {
	pp := podPorts{used: map[uint16]portUse{}, declared: map[uint16]bool{}, tcpProbe: map[uint16]bool{}}
	use := func(p int32, container, kind string) {
		if p < 1 || p > 65535 {
			return
		}
		if _, ok := pp.used[uint16(p)]; !ok {
			pp.used[uint16(p)] = portUse{container: container, kind: kind}
		}
	}
	visit := func(c *corev1.Container) {
		for _, p := range c.Ports {
			use(p.ContainerPort, c.Name, "containerPort")
			use(p.HostPort, c.Name, "hostPort")
			if p.ContainerPort >= 1 && p.ContainerPort <= 65535 {
				port := uint16(p.ContainerPort)
				if !pp.declared[port] && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
					pp.app = append(pp.app, nodemeta.AppPort{Port: uint32(port), Name: p.Name, Protocol: string(corev1.ProtocolTCP)})
				}
				pp.declared[port] = true
			}
		}
		for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if probe == nil {
				continue
			}
			switch {
			case probe.HTTPGet != nil:
				use(resolvePort(c, probe.HTTPGet.Port), c.Name, "httpGet probe")
			case probe.TCPSocket != nil:
				p := resolvePort(c, probe.TCPSocket.Port)
				use(p, c.Name, "tcpSocket probe")
				if p >= 1 && p <= 65535 {
					pp.tcpProbe[uint16(p)] = true
				}
			case probe.GRPC != nil:
				use(probe.GRPC.Port, c.Name, "grpc probe")
			}
		}
	}
	for i := range pod.Spec.InitContainers {
		visit(&pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		visit(&pod.Spec.Containers[i])
	}
	slices.SortFunc(pp.app, func(a, b nodemeta.AppPort) int { return int(a.Port) - int(b.Port) })
	return pp
}

// portUse says what of the app uses a port.
type portUse struct{ container, kind string }

func (u portUse) String() string { return fmt.Sprintf("container %q (%s)", u.container, u.kind) }

// resolvePort turns a probe's port (a number or the name of one of the
// container's ports) into a number; 0 when it cannot be resolved.
func resolvePort(c *corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// portChoice is one proxy port to place.
type portChoice struct {
	name      string  // inbound, outbound, stats, admin
	want      uint16  // the configured or requested port
	requested string  // the setting annotation that asked for it, if any
	got       *uint16 // where the chosen port goes
}

// choosePorts gives each proxy port its wanted value unless the app uses it;
// then the next free port of the configured range. A port a setting asked
// for explicitly is never moved: a clash is a deny naming the setting.
func (in *Injector) choosePorts(pp podPorts, choices []portChoice) (moved []string, err *Error) {
	taken := map[uint16]bool{}
	for _, c := range choices {
		if c.requested == "" {
			taken[c.want] = true
		}
	}
	for _, c := range choices {
		what, clash := pp.used[c.want]
		if c.requested != "" {
			if clash {
				return nil, denyf(ReasonInvalidSetting, "annotation "+c.requested, "port %d is already used by %s; pick another port or remove the annotation", c.want, what)
			}
			if c.want == in.cfg.Ports.Admin {
				return nil, denyf(ReasonInvalidSetting, "annotation "+c.requested, "port %d is Envoy's admin port; pick another port", c.want)
			}
			*c.got = c.want
			taken[c.want] = true
			continue
		}
		if !clash {
			*c.got = c.want
			continue
		}
		port, ok := in.freePort(pp, taken)
		if !ok {
			return nil, denyf(ReasonNoFreePort, "pod", "Envoy's %s port %d is used by %s and no free port is left in %d-%d (ports.rangeStart/rangeEnd)",
				c.name, c.want, what, in.cfg.Ports.RangeStart, in.cfg.Ports.RangeEnd)
		}
		*c.got = port
		taken[port] = true
		moved = append(moved, fmt.Sprintf("%s %d→%d", c.name, c.want, port))
	}
	// Explicitly requested ports must not collide with each other either.
	seen := map[uint16]string{}
	for _, c := range choices {
		if other, dup := seen[*c.got]; dup {
			return nil, denyf(ReasonInvalidSetting, "pod", "Envoy's %s and %s ports are both %d", other, c.name, *c.got)
		}
		seen[*c.got] = c.name
	}
	return moved, nil
}

func (in *Injector) freePort(pp podPorts, taken map[uint16]bool) (uint16, bool) {
	for p := int(in.cfg.Ports.RangeStart); p <= int(in.cfg.Ports.RangeEnd); p++ {
		if _, used := pp.used[uint16(p)]; !used && !taken[uint16(p)] {
			return uint16(p), true
		}
	}
	return 0, false
}

func movedWarning(moved []string) string {
	return "proxy ports moved because the app uses them: " + strings.Join(moved, ", ")
}
