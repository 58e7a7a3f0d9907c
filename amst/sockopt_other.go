//go:build !linux

package amst

import (
	"errors"
	"net"
)

var errNoSockopt = errors.New("amst: TCP_CONGESTION is supported on Linux only")

func setCongestion(tc *net.TCPConn, algo string) error { return errNoSockopt }
func getCongestion(tc *net.TCPConn) (string, error)    { return "", errNoSockopt }

func setUnsentLimit(tc *net.TCPConn, n int) error { return nil }
