// Package sysfacts reads the gateway's own system facts for its shadow:
// hostname, OS and kernel, architecture, uptime, load, CPU temperature
// where /sys/class/thermal has it, memory and disk use.
//
// # Sources
//
// Everything but the disk comes from files under [Options.Root], so tests
// point Root at a fake tree:
//
//   - hostname: proc/sys/kernel/hostname
//   - kernel: proc/sys/kernel/osrelease (uname's release)
//   - os: PRETTY_NAME from etc/os-release, or usr/lib/os-release
//   - uptimeSeconds: proc/uptime
//   - loadAvg1: proc/loadavg
//   - memTotalBytes, memAvailableBytes: MemTotal and MemAvailable in
//     proc/meminfo
//   - cpuTempC: sys/class/thermal/thermal_zone*/{type,temp}
//
// When Root is "/" and a proc/sys/kernel file cannot be read, the
// hostname and kernel come from uname(2) instead. The disk figures come
// from statfs(2) on [Options.DiskPath], a live path that Root does not
// change; arch is runtime.GOARCH.
//
// # Errors
//
// A missing or malformed source is not fatal: [Read] leaves that fact out
// and goes on, and its error joins one error per failed source, naming
// the file. The shadow should still get the facts that were read.
//
// # Shadow
//
// [Facts] is reported as is: its JSON tags are the shadow's camelCase
// names, and unknown facts are omitted, so there is no map form.
package sysfacts

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
)

// Facts are the gateway's system facts. An empty string or a nil pointer
// means the fact could not be read; [Read]'s error says why.
type Facts struct {
	// Hostname is the kernel's host name.
	Hostname string `json:"hostname,omitempty"`
	// OS is PRETTY_NAME from os-release, such as
	// "Debian GNU/Linux 12 (bookworm)".
	OS string `json:"os,omitempty"`
	// Kernel is the kernel release, as uname -r prints it.
	Kernel string `json:"kernel,omitempty"`
	// Arch is runtime.GOARCH, such as "arm64"; it is always set.
	Arch string `json:"arch"`
	// UptimeSeconds is how long the system has been up, in whole seconds.
	UptimeSeconds *uint64 `json:"uptimeSeconds,omitempty"`
	// LoadAvg1 is the one-minute load average.
	LoadAvg1 *float64 `json:"loadAvg1,omitempty"`
	// CPUTempC is the CPU temperature in degrees Celsius, from the thermal
	// zone whose type names the CPU or SoC (x86_pkg_temp, cpu-thermal,
	// cpu_thermal, soc_thermal, coretemp, ...), or else from the first
	// zone with a plausible value (-40 to 150 °C). Nil when the system
	// has no such zone, which is not an error.
	CPUTempC *float64 `json:"cpuTempC,omitempty"`
	// MemTotalBytes is the usable RAM (MemTotal).
	MemTotalBytes *uint64 `json:"memTotalBytes,omitempty"`
	// MemAvailableBytes is the memory available to start new programs
	// without swapping (MemAvailable).
	MemAvailableBytes *uint64 `json:"memAvailableBytes,omitempty"`
	// DiskTotalBytes is the size of the file system holding DiskPath.
	DiskTotalBytes *uint64 `json:"diskTotalBytes,omitempty"`
	// DiskFreeBytes is the space on that file system available to
	// unprivileged users, as df's "Avail" column shows it.
	DiskFreeBytes *uint64 `json:"diskFreeBytes,omitempty"`
}

// Options say where [Read] finds the facts. The zero value reads the
// running system and the root file system.
type Options struct {
	// Root is prefixed to every file read: "/" (the default when empty)
	// for the running system, a testdata tree in tests.
	Root string
	// DiskPath is any path on the file system whose size and free space
	// are reported, such as the agent's state directory. It is used as
	// given, not under Root. Empty means "/".
	DiskPath string
}

// Read returns the system facts. It always returns every fact it could
// read; the error, if not nil, joins one error per source that failed
// (each naming its file) and ctx.Err() if ctx was done before Read
// finished, in which case the remaining sources are not read. Read does
// not block on anything but the file system.
func Read(ctx context.Context, opts Options) (Facts, error) {
	r := reader{root: opts.Root, diskPath: opts.DiskPath}
	if r.root == "" {
		r.root = "/"
	}
	if r.diskPath == "" {
		r.diskPath = "/"
	}
	f := Facts{Arch: runtime.GOARCH}
	steps := []func(*Facts) error{
		r.hostname,
		r.kernel,
		r.osRelease,
		r.uptime,
		r.loadAvg,
		r.cpuTemp,
		r.memory,
		r.disk,
	}
	var errs []error
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if err := step(&f); err != nil {
			errs = append(errs, err)
		}
	}
	return f, errors.Join(errs...)
}

// reader reads the facts' sources.
type reader struct {
	root     string
	diskPath string
}

// path returns the file at name under the root.
func (r reader) path(name string) string {
	return filepath.Join(r.root, name)
}

// live reports whether the root is the running system's.
func (r reader) live() bool {
	return filepath.Clean(r.root) == "/"
}

// factError returns the error for a fact that could not be read.
func factError(fact string, err error) error {
	return fmt.Errorf("sysfacts: read %s: %w", fact, err)
}
