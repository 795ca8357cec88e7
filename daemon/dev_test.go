package daemon

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestLoopbackHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "127.0.0.1"},
		{"127.0.0.1", "127.0.0.1"},
		{"127.1.2.3", "127.1.2.3"},
		{"::1", "::1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"localhost", "localhost"},
		{"0.0.0.0", ""},
		{"::", ""},
		{"192.0.2.1", ""},
		{"10.0.0.1", ""},
		{"::1%lo", ""},
		{"127.0.0.1:8443", ""},
		{"example.com", ""},
		{"localhost.example.com", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := loopbackHost(tc.in)
			if tc.want == "" {
				if err == nil || !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "not a loopback address") {
					t.Fatalf("loopbackHost(%q) = %q, %v; want a usage error naming loopback", tc.in, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("loopbackHost(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestReservePorts(t *testing.T) {
	a, m, p, err := reservePorts("127.0.0.1", 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a == m || m == p || a == p {
		t.Errorf("free ports are not distinct: %s %s %s", a, m, p)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.Addr().(*net.TCPAddr).Port
	_, _, _, err = reservePorts("127.0.0.1", 0, port, 0)
	if err == nil || !strings.Contains(err.Error(), "--metrics-port "+strconv.Itoa(port)) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a port in use: %v", err)
	}
	if _, _, _, err = reservePorts("127.0.0.1", 70000, 0, 0); !errors.Is(err, ErrUsage) {
		t.Errorf("port 70000: %v", err)
	}
}

// TestWaitServingSeesServeStop: a Serve that returns while pkid dev waits
// for it ends the wait at once, rather than at the start-up deadline.
func TestWaitServingSeesServeStop(t *testing.T) {
	served := make(chan struct{})
	close(served)
	err := waitServing(context.Background(), "127.0.0.1:1", "127.0.0.1:1", served)
	if err == nil || !strings.Contains(err.Error(), "stopped while starting") {
		t.Errorf("waitServing: %v", err)
	}
}
