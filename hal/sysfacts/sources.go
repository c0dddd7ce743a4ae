package sysfacts

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// readFile returns the contents of the file at name under the root.
func (r reader) readFile(name string) (string, error) {
	b, err := os.ReadFile(r.path(name))
	return string(b), err
}

// readLine returns the file's first line, which must not be empty.
func (r reader) readLine(name string) (string, error) {
	s, err := r.readFile(name)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(s, "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", fmt.Errorf("%s: empty", r.path(name))
	}
	return line, nil
}

func (r reader) hostname(f *Facts) error {
	name, err := r.readLine("proc/sys/kernel/hostname")
	if err != nil && r.live() {
		var u utsname
		if u, err = uname(); err == nil {
			name = u.nodename
		}
	}
	if err != nil {
		return factError("hostname", err)
	}
	f.Hostname = name
	return nil
}

func (r reader) kernel(f *Facts) error {
	release, err := r.readLine("proc/sys/kernel/osrelease")
	if err != nil && r.live() {
		var u utsname
		if u, err = uname(); err == nil {
			release = u.release
		}
	}
	if err != nil {
		return factError("kernel", err)
	}
	f.Kernel = release
	return nil
}

// osRelease reads PRETTY_NAME from etc/os-release, or from
// usr/lib/os-release when the former does not exist (os-release(5)).
func (r reader) osRelease(f *Facts) error {
	s, err := r.readFile("etc/os-release")
	if errors.Is(err, fs.ErrNotExist) {
		s, err = r.readFile("usr/lib/os-release")
	}
	if err != nil {
		return factError("os", err)
	}
	f.OS = parseOSRelease(s)
	return nil
}

// parseOSRelease returns PRETTY_NAME from an os-release file, else NAME,
// else "Linux", the default os-release(5) gives. Values may be quoted
// with double or single quotes; in double quotes, a backslash escapes the
// next character.
func parseOSRelease(s string) string {
	vars := map[string]string{}
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			continue // not an assignment: ignored, as os-release(5) readers do
		}
		vars[strings.TrimSpace(key)] = unquote(strings.TrimSpace(val))
	}
	for _, k := range []string{"PRETTY_NAME", "NAME"} {
		if v := vars[k]; v != "" {
			return v
		}
	}
	return "Linux"
}

// unquote removes shell-style quotes from an os-release value.
func unquote(v string) string {
	if len(v) < 2 {
		return v
	}
	switch q := v[0]; {
	case q == '\'' && v[len(v)-1] == '\'':
		return v[1 : len(v)-1]
	case q == '"' && v[len(v)-1] == '"':
		v = v[1 : len(v)-1]
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	return v
}

func (r reader) uptime(f *Facts) error {
	name := "proc/uptime"
	line, err := r.readLine(name)
	if err != nil {
		return factError("uptime", err)
	}
	secs, err := parseFirstFloat(line)
	if err != nil || secs < 0 || secs >= math.MaxInt64 {
		return factError("uptime", fmt.Errorf("%s: invalid uptime %q", r.path(name), line))
	}
	f.UptimeSeconds = new(uint64(secs))
	return nil
}

func (r reader) loadAvg(f *Facts) error {
	name := "proc/loadavg"
	line, err := r.readLine(name)
	if err != nil {
		return factError("load average", err)
	}
	load, err := parseFirstFloat(line)
	if err != nil || load < 0 {
		return factError("load average", fmt.Errorf("%s: invalid load average %q", r.path(name), line))
	}
	f.LoadAvg1 = &load
	return nil
}

// parseFirstFloat parses the first space-separated field of line as a
// finite float64.
func parseFirstFloat(line string) (float64, error) {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return 0, errors.New("empty")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("invalid number %q", fields[0])
	}
	return v, nil
}

func (r reader) memory(f *Facts) error {
	name := "proc/meminfo"
	s, err := r.readFile(name)
	if err != nil {
		return factError("memory", err)
	}
	var errs []error
	for _, m := range []struct {
		key string
		dst **uint64
	}{
		{"MemTotal", &f.MemTotalBytes},
		{"MemAvailable", &f.MemAvailableBytes},
	} {
		n, err := meminfoBytes(s, m.key)
		if err != nil {
			errs = append(errs, factError("memory", fmt.Errorf("%s: %w", r.path(name), err)))
			continue
		}
		*m.dst = &n
	}
	return errors.Join(errs...)
}

// meminfoBytes returns the value of key in a /proc/meminfo text, where
// lines read "MemTotal:       16318580 kB".
func meminfoBytes(s, key string) (uint64, error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("%s: invalid value %q", key, strings.TrimSpace(v))
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil || n > math.MaxUint64/1024 {
			return 0, fmt.Errorf("%s: invalid value %q", key, strings.TrimSpace(v))
		}
		return n * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s", key)
}

// Plausible CPU temperatures, in millidegrees Celsius.
const (
	minMilliC = -40_000
	maxMilliC = 150_000
)

// zone is one thermal zone's reading.
type zone struct {
	n      int    // N in thermal_zoneN
	typ    string // its type, such as "x86_pkg_temp"
	milliC int64  // its temperature in millidegrees Celsius
}

// cpuTemp sets CPUTempC from the thermal zones. A system without thermal
// zones is not an error, and neither is a zone that cannot be read:
// disabled zones commonly fail with EINVAL or ENODATA.
func (r reader) cpuTemp(f *Facts) error {
	dir := "sys/class/thermal"
	entries, err := os.ReadDir(r.path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return factError("CPU temperature", err)
	}
	var zones []zone
	for _, e := range entries {
		num, ok := strings.CutPrefix(e.Name(), "thermal_zone")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil {
			continue // not a zone directory
		}
		typ, err := r.readLine(dir + "/" + e.Name() + "/type")
		if err != nil {
			continue // unreadable zone: see above
		}
		temp, err := r.readLine(dir + "/" + e.Name() + "/temp")
		if err != nil {
			continue
		}
		milliC, err := strconv.ParseInt(temp, 10, 64)
		if err != nil {
			continue
		}
		zones = append(zones, zone{n: n, typ: typ, milliC: milliC})
	}
	if z, ok := pickZone(zones); ok {
		f.CPUTempC = new(float64(z.milliC) / 1000)
	}
	return nil
}

// pickZone returns the zone to report as the CPU's: among zones with a
// plausible temperature, the one whose type ranks best, the lowest
// numbered among equals. It reports false if no zone is plausible.
func pickZone(zones []zone) (zone, bool) {
	zones = slices.DeleteFunc(slices.Clone(zones), func(z zone) bool {
		return z.milliC < minMilliC || z.milliC > maxMilliC
	})
	if len(zones) == 0 {
		return zone{}, false
	}
	return slices.MinFunc(zones, func(a, b zone) int {
		if c := typeRank(a.typ) - typeRank(b.typ); c != 0 {
			return c
		}
		return a.n - b.n
	}), true
}

// typeRank ranks a thermal zone type by how surely it is the CPU's: 0 for
// the x86 package sensor, 1 for CPU sensors (cpu-thermal, cpu_thermal,
// cpu0-thermal, cpuss0-thermal, coretemp, k10temp), 2 for SoC sensors
// (soc_thermal, soc-thermal), 3 for anything else.
func typeRank(typ string) int {
	t := strings.ToLower(typ)
	switch {
	case t == "x86_pkg_temp":
		return 0
	case strings.Contains(t, "cpu"), strings.Contains(t, "coretemp"), strings.Contains(t, "k10temp"):
		return 1
	case strings.Contains(t, "soc"):
		return 2
	}
	return 3
}

func (r reader) disk(f *Facts) error {
	total, free, err := statfs(r.diskPath)
	if err != nil {
		return factError("disk", err)
	}
	f.DiskTotalBytes = &total
	f.DiskFreeBytes = &free
	return nil
}
