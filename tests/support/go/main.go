// Creates one TCP socket through Go's net package, with Go's own keepalive off, and
// prints the keepalive settings the kernel holds for it, as tests/support/sockopt.c
// does: a preloaded library never sees the socket(2) system call Go makes itself.
package main

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

func main() {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(3)
	}
	dialer := net.Dialer{KeepAlive: -1}
	conn, err := dialer.Dial("tcp", listener.Addr().String())
	if err != nil {
		os.Exit(4)
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		os.Exit(5)
	}
	var on, idle int
	raw.Control(func(fd uintptr) {
		on, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		idle, _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
	})
	fmt.Printf("keepalive=%d idle=%d\n", on, idle)
}
