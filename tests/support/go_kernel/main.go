// Two connections through Go's net package, for tests/kernel.rs: one dialled with Go's
// default keepalive (Go turns it on, 15 s, right after connect returns), one with Go's
// keepalive left alone (KeepAlive: -1). Prints what the kernel holds for each:
//   @ LABEL keepalive=1 idle=15 interval=15 count=9 user_timeout=0
package main

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

func report(label string, conn net.Conn) {
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		os.Exit(5)
	}
	get := func(fd uintptr, level, name int) int {
		value, _ := syscall.GetsockoptInt(int(fd), level, name)
		return value
	}
	raw.Control(func(fd uintptr) {
		fmt.Printf("@ %s keepalive=%d idle=%d interval=%d count=%d user_timeout=%d\n", label,
			get(fd, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE),
			get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE),
			get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL),
			get(fd, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT),
			get(fd, syscall.IPPROTO_TCP, 18)) // TCP_USER_TIMEOUT
	})
}

func main() {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(3)
	}
	for _, dial := range []struct {
		label  string
		dialer net.Dialer
	}{
		{"go-default", net.Dialer{}},
		{"go-off", net.Dialer{KeepAlive: -1}},
	} {
		conn, err := dial.dialer.Dial("tcp", listener.Addr().String())
		if err != nil {
			os.Exit(4)
		}
		report(dial.label, conn)
	}
}
