//go:build linux

package amst

import (
	"net"

	"golang.org/x/sys/unix"
)

func setCongestion(tc *net.TCPConn, algo string) error {
	raw, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, algo)
	}); err != nil {
		return err
	}
	return serr
}

func getCongestion(tc *net.TCPConn) (string, error) {
	raw, err := tc.SyscallConn()
	if err != nil {
		return "", err
	}
	var algo string
	var serr error
	if err := raw.Control(func(fd uintptr) {
		algo, serr = unix.GetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION)
	}); err != nil {
		return "", err
	}
	return algo, serr
}

func setUnsentLimit(tc *net.TCPConn, n int) error {
	raw, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}
