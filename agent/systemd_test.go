package agent_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/thingd/thingd/sim"
	"github.com/thingd/thingd/sim/simtest"
)

func simOptionsIn(dir string) sim.Options { return sim.Options{Dir: dir} }

func simOptionsAt(dir, mqttAddr string) sim.Options { return sim.Options{Dir: dir, MQTTAddr: mqttAddr} }

// TestUnitFile: the shipped unit passes `systemd-analyze verify` with no
// complaint at all (it exits 0 on unknown keys, so any output fails) and
// `systemd-analyze security --offline=true` rates it at 2.0 or less.
func TestUnitFile(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is required (make deps installs systemd): %v", err)
	}
	unit, err := os.ReadFile("deploy/thingd.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/thingd run --config /etc/thingd/config.toml") ||
		!strings.Contains(string(unit), "Type=notify") {
		t.Fatal("unit does not start /usr/bin/thingd as Type=notify")
	}
	// verify checks that ExecStart exists: point it at the test binary.
	local := filepath.Join(t.TempDir(), "thingd.service")
	body := strings.Replace(string(unit), "ExecStart=/usr/bin/thingd", "ExecStart="+thingdBin, 1)
	if err := os.WriteFile(local, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", local).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sa, "security", "--offline=true", "--threshold=20", local).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for thingd.service: ([0-9.]+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	if score, _ := strconv.ParseFloat(string(m[1]), 64); score > 2.0 {
		t.Fatalf("exposure %.1f > 2.0", score)
	}
	t.Logf("exposure level %s", m[1])
}

// notifySocket is a fake NOTIFY_SOCKET that records what thingd sends.
type notifySocket struct {
	path string
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "notify") // short path: unix sockets are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "sock")}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := n.conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			for _, line := range strings.Split(strings.TrimSpace(string(buf[:k])), "\n") {
				n.msgs = append(n.msgs, notifyMsg{time.Now(), line})
			}
			n.mu.Unlock()
		}
	}()
	return n
}

func (n *notifySocket) count(prefix string, since time.Time) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if strings.HasPrefix(m.text, prefix) && !m.at.Before(since) {
			c++
		}
	}
	return c
}

func (n *notifySocket) find(t *testing.T, d time.Duration, prefix, contains string) string {
	t.Helper()
	var found string
	waitFor(t, d, "notify message "+prefix+" containing "+contains, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, m := range n.msgs {
			if strings.HasPrefix(m.text, prefix) && strings.Contains(m.text, contains) {
				found = m.text
				return true
			}
		}
		return false
	})
	return found
}

// TestSystemdNotify drives the notify protocol through a fake NOTIFY_SOCKET:
// READY=1 comes without the network (the broker is down), STATUS= lines
// follow the connection, WATCHDOG=1 comes periodically and stops once the
// main loop wedges (crashhook build: THINGD_TEST_WEDGE_AFTER).
func TestSystemdNotify(t *testing.T) {
	dir := t.TempDir()
	s := simtest.StartWith(t, simOptionsIn(dir))
	addr := s.MQTTAddr()
	a, b := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, b)
	if err := s.Close(); err != nil { // no broker: READY must not wait for it
		t.Fatal(err)
	}
	n := newNotifySocket(t)
	p := startThingdBin(t, crashBin, []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=400000", "THINGD_TEST_WEDGE_AFTER=6s"}, d.config)
	start := time.Now()
	n.find(t, 10*time.Second, "READY=1", "")
	n.find(t, 5*time.Second, "STATUS=", "gw-1 ")
	if n.count("STATUS=", start) == 0 || strings.Contains(n.find(t, time.Second, "STATUS=", "gw-1"), " connected,") {
		t.Fatal("STATUS= claims connected while the broker is down")
	}
	// The broker comes up: STATUS= says connected.
	simtest.StartWith(t, simOptionsAt(dir, addr))
	n.find(t, 20*time.Second, "STATUS=", "gw-1 connected, certificate")

	// Watchdog pings at half of 400 ms while the loop is healthy.
	time.Sleep(time.Second)
	if c := n.count("WATCHDOG=1", time.Now().Add(-time.Second)); c < 3 {
		t.Fatalf("%d WATCHDOG=1 in the last second, want at least 3", c)
	}
	// After the wedge (6 s after start) the pings stop.
	time.Sleep(time.Until(start.Add(7 * time.Second)))
	p.waitLog(t, 5*time.Second, "main loop wedged")
	quiet := time.Now()
	time.Sleep(1500 * time.Millisecond)
	if c := n.count("WATCHDOG=1", quiet); c != 0 {
		t.Fatalf("%d WATCHDOG=1 after the main loop wedged", c)
	}
	p.waitLog(t, time.Second, "withholding the watchdog ping")
}

// TestReload: SIGHUP re-reads the config. A live setting (log level) is
// applied with the identity kept; a broken config is refused and the
// running one kept; a changed endpoint restarts the agent inside the same
// process, which connects again.
func TestReload(t *testing.T) {
	s := simtest.Start(t)
	a, b := softHSMKey(t, "device")
	d := newRotationDevice(t, s, "gw-1", a, b)
	n := newNotifySocket(t)
	p := startThingdBin(t, thingdBin, []string{"NOTIFY_SOCKET=" + n.path}, d.config)
	waitConnectedAs(t, d.config, d.certID)
	pid := p.cmd.Process.Pid
	orig := readFile(t, d.config)

	write := func(body string) {
		if err := os.WriteFile(d.config, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(orig, `log_level = "debug"`, `log_level = "info"`, 1))
	p.waitLog(t, 10*time.Second, "reload: config applied; identity kept")
	n.find(t, 5*time.Second, "RELOADING=1", "")

	write(orig + "\nbogus_key = 1\n")
	p.waitLog(t, 10*time.Second, "reload: config not loaded; keeping the running one")
	if _, done := p.exited(500 * time.Millisecond); done {
		t.Fatal("thingd exited on a broken config")
	}

	_, port, _ := strings.Cut(s.MQTTAddr(), ":")
	write(strings.Replace(orig, "localhost:"+port, "127.0.0.1:"+port, 1))
	p.waitLog(t, 10*time.Second, "reload: restarting with the new config")
	waitFor(t, 20*time.Second, "thingd reconnected to 127.0.0.1", func() bool {
		return strings.Count(p.stderr.String(), "mqtt connected") >= 2
	})
	if p.cmd.Process.Pid != pid {
		t.Fatal("restarted as another process")
	}
	if _, done := p.exited(0); done {
		t.Fatal("thingd exited on reload")
	}
}
