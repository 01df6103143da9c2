package xds

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// connLimiter is the gRPC listener: at most max connections open (Accept
// waits above it: further ones stay in the kernel's queue), each findable
// by its remote address so that a stream whose client stops reading can
// have its connection cut. netutil.LimitListener limits, but cannot find a
// connection again.
type connLimiter struct {
	net.Listener
	sem   chan struct{}
	conns sync.Map // remote address -> *limitedConn
}

func newConnLimiter(l net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: l, sem: make(chan struct{}, max)}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	lc := &limitedConn{Conn: c, l: l}
	l.conns.Store(c.RemoteAddr().String(), lc)
	return lc, nil
}

// cut closes the connection of addr, if it is open.
func (l *connLimiter) cut(addr string) bool {
	if c, ok := l.conns.Load(addr); ok {
		c.(*limitedConn).Close()
		return true
	}
	return false
}

type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.conns.Delete(c.RemoteAddr().String())
		<-c.l.sem
	})
	return err
}

// sendTimeout is a stream interceptor: a response that the client does not
// take within timeout (a client that never reads, whose flow-control window
// stays full) gets the client's connection cut, which ends the blocked
// send and frees what it pinned (RELIABILITY.md row X4).
func sendTimeout(timeout time.Duration, conns *connLimiter, onCut func(addr string)) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		addr := ""
		if p, ok := peer.FromContext(ss.Context()); ok && p.Addr != nil {
			addr = p.Addr.String()
		}
		return handler(srv, &timedStream{ServerStream: ss, timeout: timeout, cut: func() {
			if conns.cut(addr) && onCut != nil {
				onCut(addr)
			}
		}})
	}
}

type timedStream struct {
	grpc.ServerStream
	timeout time.Duration
	cut     func()
}

func (s *timedStream) SendMsg(m any) error {
	t := time.AfterFunc(s.timeout, s.cut)
	defer t.Stop()
	return s.ServerStream.SendMsg(m)
}

// peerIP is the IP of a stream's client, unmapped (::ffff:10.0.0.1 is
// 10.0.0.1).
func peerIP(p *peer.Peer) (netip.Addr, bool) {
	if p == nil || p.Addr == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}
