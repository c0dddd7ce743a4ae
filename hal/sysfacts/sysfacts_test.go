package sysfacts_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/thingd/thingd/hal/sysfacts"
)

func TestReadFakeTrees(t *testing.T) {
	tests := []struct {
		name    string
		root    string
		want    sysfacts.Facts // disk figures are checked apart
		wantErr []string       // substrings of the error; none: no error
	}{
		{
			name: "x86 with x86_pkg_temp",
			root: "testdata/x86",
			want: sysfacts.Facts{
				Hostname:          "gw-x86",
				OS:                "Debian GNU/Linux 12 (bookworm)",
				Kernel:            "6.1.0-18-amd64",
				Arch:              runtime.GOARCH,
				UptimeSeconds:     new(uint64(354212)),
				LoadAvg1:          new(0.52),
				CPUTempC:          new(45.5),
				MemTotalBytes:     new(uint64(16318580 * 1024)),
				MemAvailableBytes: new(uint64(8159290 * 1024)),
			},
		},
		{
			name: "Raspberry Pi cpu-thermal",
			root: "testdata/rpi",
			want: sysfacts.Facts{
				Hostname:          "raspberrypi",
				OS:                "Raspbian GNU/Linux 12 (bookworm)",
				Kernel:            "6.6.31+rpt-rpi-v8",
				Arch:              runtime.GOARCH,
				UptimeSeconds:     new(uint64(1234)),
				LoadAvg1:          new(1.25),
				CPUTempC:          new(48.312),
				MemTotalBytes:     new(uint64(3885396 * 1024)),
				MemAvailableBytes: new(uint64(3500000 * 1024)),
			},
		},
		{
			name: "no thermal zones",
			root: "testdata/nothermal",
			want: sysfacts.Facts{
				Hostname:          "vm1",
				OS:                `Ubuntu 24.04 LTS "Noble"`,
				Kernel:            "6.8.0-31-generic",
				Arch:              runtime.GOARCH,
				UptimeSeconds:     new(uint64(60)),
				LoadAvg1:          new(0.0),
				MemTotalBytes:     new(uint64(2000000 * 1024)),
				MemAvailableBytes: new(uint64(1000000 * 1024)),
			},
		},
		{
			name: "malformed meminfo and uptime, no os-release, no CPU zone",
			root: "testdata/badmeminfo",
			want: sysfacts.Facts{
				Hostname: "gw-bad",
				Kernel:   "5.10.0",
				Arch:     runtime.GOARCH,
				LoadAvg1: new(0.10),
				CPUTempC: new(39.0), // the first plausible zone
			},
			wantErr: []string{
				"testdata/badmeminfo/proc/meminfo: MemTotal: invalid value \"12x kB\"",
				"testdata/badmeminfo/proc/meminfo: no MemAvailable",
				"testdata/badmeminfo/proc/uptime: invalid uptime \"up a while\"",
				"sysfacts: read os: open testdata/badmeminfo/usr/lib/os-release: ",
			},
		},
		{
			name: "empty root",
			root: "testdata/empty-does-not-exist",
			want: sysfacts.Facts{Arch: runtime.GOARCH},
			wantErr: []string{
				"sysfacts: read hostname: open testdata/empty-does-not-exist/proc/sys/kernel/hostname: ",
				"sysfacts: read kernel: open testdata/empty-does-not-exist/proc/sys/kernel/osrelease: ",
				"sysfacts: read os: ",
				"sysfacts: read uptime: ",
				"sysfacts: read load average: ",
				"sysfacts: read memory: ",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diskPath := t.TempDir()
			got, err := sysfacts.Read(context.Background(), sysfacts.Options{Root: tt.root, DiskPath: diskPath})
			if len(tt.wantErr) == 0 && err != nil {
				t.Errorf("Read() error: %v", err)
			}
			if len(tt.wantErr) > 0 && err == nil {
				t.Errorf("Read() error = nil, want one naming %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if err != nil && !strings.Contains(err.Error(), w) {
					t.Errorf("Read() error = %q, want it to contain %q", err, w)
				}
			}
			if got.DiskTotalBytes == nil || *got.DiskTotalBytes == 0 ||
				got.DiskFreeBytes == nil || *got.DiskFreeBytes > *got.DiskTotalBytes {
				t.Errorf("Read() disk = %v total, %v free; want 0 < free ≤ total", got.DiskTotalBytes, got.DiskFreeBytes)
			}
			got.DiskTotalBytes, got.DiskFreeBytes = nil, nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Read() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadDiskPathError(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	got, err := sysfacts.Read(context.Background(), sysfacts.Options{Root: "testdata/rpi", DiskPath: missing})
	if err == nil || !strings.Contains(err.Error(), "sysfacts: read disk: statfs "+missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read() error = %v, want a statfs error naming %s", err, missing)
	}
	if got.DiskTotalBytes != nil || got.DiskFreeBytes != nil {
		t.Errorf("Read() disk = %v, %v; want nil", got.DiskTotalBytes, got.DiskFreeBytes)
	}
	if got.Hostname != "raspberrypi" || got.CPUTempC == nil {
		t.Errorf("Read() = %+v; want the other facts still read", got)
	}
}

func TestReadCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got, err := sysfacts.Read(ctx, sysfacts.Options{Root: "testdata/x86"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Read() error = %v, want context.Canceled", err)
	}
	if diff := cmp.Diff(sysfacts.Facts{Arch: runtime.GOARCH}, got); diff != "" {
		t.Errorf("Read() mismatch (-want +got):\n%s", diff)
	}
}

// TestJSON pins the shadow's names: the gateway reports Facts as is.
func TestJSON(t *testing.T) {
	full := sysfacts.Facts{
		Hostname:          "gw",
		OS:                "Debian GNU/Linux 12 (bookworm)",
		Kernel:            "6.1.0",
		Arch:              "arm64",
		UptimeSeconds:     new(uint64(3600)),
		LoadAvg1:          new(0.0),
		CPUTempC:          new(-3.5),
		MemTotalBytes:     new(uint64(1 << 30)),
		MemAvailableBytes: new(uint64(0)),
		DiskTotalBytes:    new(uint64(1 << 34)),
		DiskFreeBytes:     new(uint64(0)),
	}
	tests := []struct {
		name  string
		facts sysfacts.Facts
		want  string
	}{
		{"full, zero values kept", full, `{"hostname":"gw","os":"Debian GNU/Linux 12 (bookworm)","kernel":"6.1.0",` +
			`"arch":"arm64","uptimeSeconds":3600,"loadAvg1":0,"cpuTempC":-3.5,"memTotalBytes":1073741824,` +
			`"memAvailableBytes":0,"diskTotalBytes":17179869184,"diskFreeBytes":0}`},
		{"unknown facts omitted", sysfacts.Facts{Arch: "arm"}, `{"arch":"arm"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.facts)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("json.Marshal(%+v) =\n%s\nwant\n%s", tt.facts, b, tt.want)
			}
		})
	}
}

// TestReadThisMachine reads the running system and checks the facts
// every Linux machine has are plausible.
func TestReadThisMachine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("sysfacts reads Linux sources")
	}
	got, err := sysfacts.Read(context.Background(), sysfacts.Options{})
	if err != nil {
		// Some sources may be missing in minimal containers; the
		// assertions below name the facts that must be there.
		t.Logf("Read() error: %v", err)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("json.Marshal(%+v): %v", got, err)
	}
	t.Logf("Read() = %s", b)

	if want, err := os.Hostname(); err == nil && got.Hostname != want {
		t.Errorf("Hostname = %q, want %q", got.Hostname, want)
	}
	if got.Hostname == "" {
		t.Error("Hostname is empty")
	}
	if got.Kernel == "" {
		t.Error("Kernel is empty")
	}
	if got.Arch != runtime.GOARCH {
		t.Errorf("Arch = %q, want %q", got.Arch, runtime.GOARCH)
	}
	if got.UptimeSeconds == nil || *got.UptimeSeconds == 0 {
		t.Errorf("UptimeSeconds = %v, want > 0", got.UptimeSeconds)
	}
	if got.MemTotalBytes == nil || *got.MemTotalBytes == 0 {
		t.Errorf("MemTotalBytes = %v, want > 0", got.MemTotalBytes)
	} else if got.MemAvailableBytes != nil && *got.MemAvailableBytes > *got.MemTotalBytes {
		t.Errorf("MemAvailableBytes = %d > MemTotalBytes = %d", *got.MemAvailableBytes, *got.MemTotalBytes)
	}
	if got.DiskTotalBytes == nil || *got.DiskTotalBytes == 0 {
		t.Errorf("DiskTotalBytes = %v, want > 0", got.DiskTotalBytes)
	} else if got.DiskFreeBytes == nil || *got.DiskFreeBytes > *got.DiskTotalBytes {
		t.Errorf("DiskFreeBytes = %v, want ≤ DiskTotalBytes = %d", got.DiskFreeBytes, *got.DiskTotalBytes)
	}
	if c := got.CPUTempC; c != nil && (*c < -40 || *c > 150) {
		t.Errorf("CPUTempC = %v, want within -40..150", *c)
	}
}
