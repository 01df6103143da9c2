package nodemeta

import (
	"encoding/json"
	"testing"
)

func checkOverlay(t *testing.T, o *Overlay) {
	t.Helper()
	want, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.appendJSON(nil); string(got) != string(want) {
		t.Fatalf("appendJSON:\n%s\nencoding/json:\n%s", got, want)
	}
}

// TestOverlayEncoding: the overlay's bytes are encoding/json's, with every
// optional member present and absent.
func TestOverlayEncoding(t *testing.T) {
	t.Parallel()
	full := Metadata{Version: Version, InboundPort: 10001, OutboundPort: 10002, StatsPort: 10090, AdminPort: 9902,
		AppPorts:            []AppPort{{Port: 8080, Name: "http", Protocol: ProtocolTCP}, {Port: 53}, {Port: 5000, Protocol: ProtocolUDP}, {Port: 1, Name: "<é>"}},
		ExcludeInboundPorts: []uint32{9091, 10090}, PodIP: PodIPRef, IPv6: IPv6Off, ConfigHash: "abc", InjectorVersion: "v0.1.0"}
	checkOverlay(t, &Overlay{Node: OverlayNode{ID: NodeID, Cluster: NodeCluster, Metadata: full}})
	checkOverlay(t, &Overlay{Node: OverlayNode{ID: NodeID, Cluster: NodeCluster, Metadata: Metadata{AppPorts: []AppPort{}, ExcludeInboundPorts: []uint32{}}}})
	o := Overlay{Node: OverlayNode{Metadata: full}, Admin: &OverlayAdmin{}}
	o.Admin.Address.SocketAddress.Address, o.Admin.Address.SocketAddress.PortValue = "127.0.0.1", 9902
	checkOverlay(t, &o)
}

// FuzzOverlayEncoding: the overlay's bytes are encoding/json's.
func FuzzOverlayEncoding(f *testing.F) {
	f.Add("v1", "http", "TCP", uint32(8080), "$(POD_IP)", "auto", "h", "<&>", true)
	f.Fuzz(func(t *testing.T, version, name, protocol string, port uint32, podIP, ipv6, hash, injector string, admin bool) {
		o := Overlay{Node: OverlayNode{ID: name, Cluster: protocol, Metadata: Metadata{
			Version: version, InboundPort: port, OutboundPort: port + 1, StatsPort: port / 2, AdminPort: port / 3,
			AppPorts: []AppPort{{Port: port, Name: name, Protocol: protocol}, {Port: port / 7}}, ExcludeInboundPorts: []uint32{port, 0},
			PodIP: podIP, IPv6: ipv6, ConfigHash: hash, InjectorVersion: injector,
		}}}
		if admin {
			o.Admin = &OverlayAdmin{}
			o.Admin.Address.SocketAddress.Address, o.Admin.Address.SocketAddress.PortValue = podIP, port
		}
		checkOverlay(t, &o)
	})
}
