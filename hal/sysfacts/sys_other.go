//go:build !linux

package sysfacts

import (
	"errors"
	"fmt"
)

// utsname holds the uname(2) fields Read uses.
type utsname struct {
	nodename string
	release  string
}

// uname is only implemented on Linux, the platform thingd runs on.
func uname() (utsname, error) {
	return utsname{}, fmt.Errorf("uname: %w", errors.ErrUnsupported)
}

// statfs is only implemented on Linux, the platform thingd runs on.
func statfs(path string) (total, avail uint64, err error) {
	return 0, 0, fmt.Errorf("statfs %s: %w", path, errors.ErrUnsupported)
}
