package sysfacts

import (
	"fmt"
	"syscall"
)

// utsname holds the uname(2) fields Read uses.
type utsname struct {
	nodename string
	release  string
}

// uname returns the host name and kernel release from uname(2).
func uname() (utsname, error) {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return utsname{}, fmt.Errorf("uname: %w", err)
	}
	return utsname{nodename: cString(u.Nodename[:]), release: cString(u.Release[:])}, nil
}

// cString converts a NUL-terminated utsname field, whose element type is
// int8 or uint8 depending on the architecture, to a string.
func cString[T int8 | uint8](field []T) string {
	b := make([]byte, 0, len(field))
	for _, c := range field {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// statfs returns the size of the file system holding path and the space
// on it available to unprivileged users, in bytes.
func statfs(path string) (total, avail uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	// Block counts are in units of the fragment size; Bsize is the
	// preferred I/O size, equal to it on the file systems Linux has.
	unit := uint64(st.Frsize)
	if unit == 0 {
		unit = uint64(st.Bsize)
	}
	return uint64(st.Blocks) * unit, uint64(st.Bavail) * unit, nil
}
