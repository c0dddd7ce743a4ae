// Command package builds thingd's Debian packages with nfpm (used as a
// library: no hand-written ar/tar code) from binaries that `make cross` put
// in bin/linux-GOARCH/. It is its own main package so that the thingd
// binary never links nfpm:
//
//	go run ./agent/deploy/package -version 0.1.0 -bin bin -out bin
//
// For each architecture (-arch, Debian names: amd64, arm64, armhf) it writes
// OUT/thingd_VERSION_ARCH.deb with:
//
//	/usr/bin/thingd                           bin/linux-GOARCH/thingd (checked to be an ELF of that architecture)
//	/lib/systemd/system/thingd.service        agent/deploy/thingd.service
//	/etc/thingd/config.toml                   agent/deploy/config.example.toml, a conffile
//	/usr/share/man/man8/thingd.8.gz           agent/deploy/thingd.8
//	/usr/share/doc/thingd/copyright           agent/deploy/debian/copyright + the licenses of the Go modules linked into thingd
//	/usr/share/doc/thingd/changelog.Debian.gz one entry for this version (nfpm writes it)
//
// and the maintainer scripts in agent/deploy/debian/ (postinst, prerm,
// postrm; see the comments in each).
package main

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// arch is one target: the Debian architecture, the Go one and the ELF machine
// its binaries must have.
type arch struct {
	deb, goarch, goarm string
	machine            elf.Machine
}

var archs = []arch{
	{deb: "amd64", goarch: "amd64", machine: elf.EM_X86_64},
	{deb: "arm64", goarch: "arm64", machine: elf.EM_AARCH64},
	{deb: "armhf", goarch: "arm", goarm: "7", machine: elf.EM_ARM},
}

const (
	name        = "thingd"
	description = `device identity agent for AWS IoT Core
 thingd gives a Linux gateway a strong, unique identity: a private key
 generated inside secure hardware (a PKCS#11 token such as SoftHSM or a real
 HSM, or a TPM 2.0) that never leaves it. It connects to AWS IoT Core (or any
 MQTT broker with mutual TLS) as its thing, rotates its certificate before it
 expires and reports its state in the Device Shadow.
 .
 The package installs the daemon, a hardened systemd unit (not enabled: edit
 /etc/thingd/config.toml and make the device key first, then
 "systemctl enable --now thingd") and a system user thingd in group tss.`
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("package: ")
	version := flag.String("version", "", "package version, e.g. 0.1.0 or 0.1.0-dev+g1234abc (semver; becomes 0.1.0~dev+g1234abc-1 in Debian)")
	release := flag.String("release", "1", "Debian revision")
	binDir := flag.String("bin", "bin", "directory holding linux-GOARCH/thingd")
	outDir := flag.String("out", "bin", "where to write the .deb files")
	deployDir := flag.String("deploy", "agent/deploy", "directory holding thingd.service, config.example.toml, thingd.8 and debian/")
	archList := flag.String("arch", "amd64,arm64,armhf", "comma-separated Debian architectures")
	maintainer := flag.String("maintainer", "thingd maintainers <maintainers@thingd.invalid>", "Maintainer field")
	epoch := flag.Int64("mtime", 0, "modification time of every file, in seconds since the epoch (default: $SOURCE_DATE_EPOCH, else now)")
	flag.Parse()
	if *version == "" {
		log.Fatal("-version is required")
	}
	mtime := time.Now().UTC().Truncate(time.Second)
	if *epoch == 0 {
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			if _, err := fmt.Sscan(s, epoch); err != nil {
				log.Fatalf("SOURCE_DATE_EPOCH=%q: %v", s, err)
			}
		}
	}
	if *epoch != 0 {
		mtime = time.Unix(*epoch, 0).UTC()
	}

	for _, a := range strings.Split(*archList, ",") {
		i := slices.IndexFunc(archs, func(x arch) bool { return x.deb == a })
		if i < 0 {
			log.Fatalf("unknown architecture %q (known: amd64, arm64, armhf)", a)
		}
		out, err := build(archs[i], *version, *release, *binDir, *outDir, *deployDir, *maintainer, mtime)
		if err != nil {
			log.Fatalf("%s: %v", a, err)
		}
		st, err := os.Stat(out)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%-50s %6.2f MB\n", out, float64(st.Size())/1e6)
	}
}

func build(a arch, version, release, binDir, outDir, deployDir, maintainer string, mtime time.Time) (string, error) {
	bin := filepath.Join(binDir, "linux-"+a.goarch, "thingd")
	if err := checkELF(bin, a.machine); err != nil {
		return "", fmt.Errorf("%w (run `make cross`)", err)
	}
	unit := filepath.Join(deployDir, "thingd.service")
	if _, err := os.Stat(unit); err != nil {
		return "", err
	}

	// Generated files (changelog, man page, copyright) go to a temporary
	// directory that lives until the package is written.
	gen, err := os.MkdirTemp("", "thingd-package-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(gen)
	changelog := filepath.Join(gen, "changelog.yml")
	if err := writeChangelog(changelog, version, release, maintainer, mtime); err != nil {
		return "", err
	}
	manpage := filepath.Join(gen, "thingd.8.gz")
	if err := gzipFile(filepath.Join(deployDir, "thingd.8"), manpage); err != nil {
		return "", err
	}
	copyright := filepath.Join(gen, "copyright")
	if err := writeCopyright(copyright, filepath.Join(deployDir, "debian", "copyright"), a); err != nil {
		return "", err
	}

	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode}}
	}
	info := &nfpm.Info{
		Name:        name,
		Arch:        a.deb,
		Platform:    "linux",
		Version:     version,
		Release:     release,
		Section:     "net",
		Priority:    "optional",
		Maintainer:  maintainer,
		Description: description,
		Homepage:    "https://github.com/thingd/thingd",
		Changelog:   changelog,
		MTime:       mtime,
		Overridables: nfpm.Overridables{
			// cgo (PKCS#11 through miekg/pkcs11) links glibc; Debian's cross
			// compilers build against glibc 2.36, and the binary needs >= 2.34.
			Depends:    []string{"libc6 (>= 2.34)", "adduser"},
			Recommends: []string{"softhsm2 | tpm2-tools"},
			Contents: files.Contents{
				file(bin, "/usr/bin/thingd", 0o755),
				file(unit, "/lib/systemd/system/thingd.service", 0o644),
				// A conffile: dpkg never replaces a copy the admin changed (it
				// asks, or keeps it with --force-confold), and the maintainer
				// scripts never write it.
				{
					Source: filepath.Join(deployDir, "config.example.toml"), Destination: "/etc/thingd/config.toml",
					Type: files.TypeConfigNoReplace, FileInfo: &files.ContentFileInfo{Mode: 0o644},
				},
				file(manpage, "/usr/share/man/man8/thingd.8.gz", 0o644),
				file(copyright, "/usr/share/doc/thingd/copyright", 0o644),
			},
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(deployDir, "debian", "postinst"),
				PreRemove:   filepath.Join(deployDir, "debian", "prerm"),
				PostRemove:  filepath.Join(deployDir, "debian", "postrm"),
			},
			Deb: nfpm.Deb{Compression: "xz"},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.Validate(info); err != nil {
		return "", err
	}
	pkg := deb.Default
	out := filepath.Join(outDir, pkg.ConventionalFileName(info))
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return "", err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return out, os.Rename(out+".tmp", out)
}

// checkELF makes sure path is an ELF executable for machine, so that an
// amd64 binary never ends up in the arm64 package.
func checkELF(path string, machine elf.Machine) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Machine != machine {
		return fmt.Errorf("%s is an ELF for %v, want %v", path, f.Machine, machine)
	}
	return nil
}

// writeChangelog writes a chglog file with one entry for this version, from
// which nfpm makes /usr/share/doc/thingd/changelog.Debian.gz.
func writeChangelog(path, version, release, maintainer string, date time.Time) error {
	// nfpm renders the Debian version as VERSION~PRERELEASE+METADATA-RELEASE.
	info := nfpm.WithDefaults(&nfpm.Info{Name: name, Arch: "all", Version: version, Release: release})
	debVersion := strings.TrimSuffix(strings.TrimPrefix(deb.Default.ConventionalFileName(info), name+"_"), "_all.deb")
	body := fmt.Sprintf(`- semver: %q
  date: %q
  packager: %q
  deb:
    urgency: medium
    distributions:
      - unstable
  changes:
    - note: "thingd %s, built from source with make package."
`, debVersion, date.Format(time.RFC3339), maintainer, version)
	return os.WriteFile(path, []byte(body), 0o644)
}

// gzipFile compresses src into dst with maximum compression and no name or
// timestamp in the gzip header (lintian warns about timestamped gzip files).
func gzipFile(src, dst string) error {
	in, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(in); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(dst, buf.Bytes(), 0o644)
}

// writeCopyright writes the package's copyright file: the text in
// agent/deploy/debian/copyright, then, because a Go program is one static
// binary, the license (and NOTICE) of every module linked into thingd for
// this architecture, found with `go list -deps`, and Go's own.
func writeCopyright(dst, head string, a arch) error {
	var out bytes.Buffer
	h, err := os.ReadFile(head)
	if err != nil {
		return err
	}
	out.Write(bytes.TrimRight(h, "\n"))
	out.WriteString("\n")

	cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{.Path}} {{.Version}} {{.Dir}}{{end}}", "./agent/cmd/thingd")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+a.goarch, "CGO_ENABLED=1")
	if a.goarm != "" {
		cmd.Env = append(cmd.Env, "GOARM="+a.goarm)
	}
	cmd.Stderr = os.Stderr
	list, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("go list -deps ./agent/cmd/thingd: %w", err)
	}
	type module struct{ path, version, dir string }
	var mods []module
	for line := range strings.Lines(string(list)) {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] == "github.com/thingd/thingd" {
			continue
		}
		if !slices.ContainsFunc(mods, func(m module) bool { return m.path == f[0] }) {
			mods = append(mods, module{f[0], f[1], f[2]})
		}
	}
	slices.SortFunc(mods, func(x, y module) int { return strings.Compare(x.path, y.path) })
	goroot := runtime.GOROOT()
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		goroot = strings.TrimSpace(string(out))
	}
	mods = append([]module{{"Go standard library and runtime", runtime.Version(), goroot}}, mods...)

	out.WriteString("\n" + strings.Repeat("=", 78) + "\n")
	out.WriteString("/usr/bin/thingd is statically linked with the following Go modules.\n")
	out.WriteString("Their copyright notices and licenses follow.\n")
	for _, m := range mods {
		texts, err := licenseFiles(m.dir)
		if err != nil {
			return err
		}
		if len(texts) == 0 {
			return fmt.Errorf("module %s %s has no LICENSE file in %s", m.path, m.version, m.dir)
		}
		fmt.Fprintf(&out, "\n%s\n%s %s\n%s\n", strings.Repeat("-", 78), m.path, m.version, strings.Repeat("-", 78))
		for _, t := range texts {
			out.WriteString("\n")
			if isApache2(t) {
				// Debian policy 12.5: refer to common-licenses, do not copy it.
				out.WriteString("Licensed under the Apache License, Version 2.0. On Debian systems the full text\n" +
					"of the license is in /usr/share/common-licenses/Apache-2.0.\n")
				continue
			}
			out.Write(bytes.TrimSpace(t))
			out.WriteString("\n")
		}
	}
	return os.WriteFile(dst, out.Bytes(), 0o644)
}

// isApache2 reports whether a license file is the full text of the Apache
// License 2.0.
func isApache2(text []byte) bool {
	return bytes.Contains(text, []byte("Apache License")) && bytes.Contains(text, []byte("Version 2.0, January 2004")) &&
		bytes.Contains(text, []byte("TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION"))
}

// licenseFiles returns the LICENSE/COPYING and NOTICE files at the top of a
// module directory.
func licenseFiles(dir string) ([][]byte, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var texts [][]byte
	for _, e := range ents {
		n := strings.ToUpper(e.Name())
		if e.IsDir() || !(strings.HasPrefix(n, "LICENSE") || strings.HasPrefix(n, "LICENCE") ||
			strings.HasPrefix(n, "COPYING") || strings.HasPrefix(n, "NOTICE")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(b)) > 0 {
			texts = append(texts, b)
		}
	}
	return texts, nil
}
