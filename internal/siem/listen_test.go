package siem

import (
	"net"
	"time"
)

// listenOn listens on addr, retrying briefly while the previous listener's port is released.
func listenOn(addr string) (net.Listener, error) {
	var err error
	for i := 0; i < 50; i++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}
