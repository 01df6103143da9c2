package nodemeta

import (
	"strconv"

	"github.com/sidecar-injector/sidecar-injector/internal/jsonenc"
)

// appendJSON appends o as encoding/json marshals it (TestOverlayEncoding and
// FuzzOverlayEncoding compare them), without its reflection: the webhook
// renders an overlay for every pod it injects.
func (o *Overlay) appendJSON(b []byte) []byte {
	b = append(b, `{"node":{"id":`...)
	b = jsonenc.String(b, o.Node.ID)
	b = append(b, `,"cluster":`...)
	b = jsonenc.String(b, o.Node.Cluster)
	b = append(b, `,"metadata":`...)
	b = o.Node.Metadata.appendJSON(b)
	b = append(b, '}')
	if a := o.Admin; a != nil {
		b = append(b, `,"admin":{"address":{"socket_address":{"address":`...)
		b = jsonenc.String(b, a.Address.SocketAddress.Address)
		b = append(b, `,"port_value":`...)
		b = strconv.AppendUint(b, uint64(a.Address.SocketAddress.PortValue), 10)
		b = append(b, "}}}"...)
	}
	return append(b, '}')
}

func (md *Metadata) appendJSON(b []byte) []byte {
	b = append(b, `{"version":`...)
	b = jsonenc.String(b, md.Version)
	b = append(b, `,"inboundPort":`...)
	b = strconv.AppendUint(b, uint64(md.InboundPort), 10)
	b = append(b, `,"outboundPort":`...)
	b = strconv.AppendUint(b, uint64(md.OutboundPort), 10)
	b = append(b, `,"statsPort":`...)
	b = strconv.AppendUint(b, uint64(md.StatsPort), 10)
	b = append(b, `,"adminPort":`...)
	b = strconv.AppendUint(b, uint64(md.AdminPort), 10)
	if len(md.AppPorts) > 0 {
		b = append(b, `,"appPorts":[`...)
		for i, p := range md.AppPorts {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"port":`...)
			b = strconv.AppendUint(b, uint64(p.Port), 10)
			b = jsonenc.OmitEmpty(b, `,"name":`, p.Name)
			b = jsonenc.OmitEmpty(b, `,"protocol":`, p.Protocol)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(md.ExcludeInboundPorts) > 0 {
		b = append(b, `,"excludeInboundPorts":[`...)
		for i, p := range md.ExcludeInboundPorts {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(p), 10)
		}
		b = append(b, ']')
	}
	b = jsonenc.OmitEmpty(b, `,"podIP":`, md.PodIP)
	b = jsonenc.OmitEmpty(b, `,"ipv6":`, md.IPv6)
	b = append(b, `,"configHash":`...)
	b = jsonenc.String(b, md.ConfigHash)
	b = append(b, `,"injectorVersion":`...)
	b = jsonenc.String(b, md.InjectorVersion)
	return append(b, '}')
}
