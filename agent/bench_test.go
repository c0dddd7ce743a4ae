package agent_test

import (
	"bufio"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingd/thingd/agent/keys"
	"github.com/thingd/thingd/keystore"
	"github.com/thingd/thingd/keystore/keystoretest"
	"github.com/thingd/thingd/sim/simtest"
)

var (
	benchBinOnce sync.Once
	benchBin     string
)

// thingdForBench builds thingd without the race detector, as shipped, next
// to the test binaries TestMain builds (and removes when the run ends).
func thingdForBench(b *testing.B) string {
	benchBinOnce.Do(func() {
		bin := filepath.Join(filepath.Dir(thingdBin), "thingd-bench")
		out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/thingd/thingd/agent/cmd/thingd").CombinedOutput()
		if err != nil {
			b.Logf("build thingd: %v\n%s", err, out)
			return
		}
		benchBin = bin
	})
	if benchBin == "" {
		b.Fatal("building the non-race thingd failed (see the first benchmark's log)")
	}
	return benchBin
}

// benchDevice provisions thing gw-1 in the in-process sim with a key at uri.
func benchDevice(b *testing.B, s *simtest.Sim, uri string) string {
	ctx := context.Background()
	u := keystore.MustParseURI(uri)
	if _, err := keys.Generate(ctx, u, keystore.ECDSAP256, nil); err != nil {
		b.Fatal(err)
	}
	csr, err := keys.CSR(ctx, u, "gw-1", nil)
	if err != nil {
		b.Fatal(err)
	}
	certPEM, _, err := s.IssueThingCertificate(ctx, "gw-1", string(csr), 30)
	if err != nil {
		b.Fatal(err)
	}
	certFile := filepath.Join(b.TempDir(), "cert.pem")
	if err := os.WriteFile(certFile, []byte(certPEM), 0o644); err != nil {
		b.Fatal(err)
	}
	return certFile
}

func benchConfig(b *testing.B, s *simtest.Sim, uri, certFile string) string {
	_, port, _ := strings.Cut(s.MQTTAddr(), ":")
	p := filepath.Join(b.TempDir(), "thingd.toml")
	body := "thing_name = \"gw-1\"\nendpoint = \"localhost:" + port + "\"\nserver_ca = \"" + s.CAPath() +
		"\"\nstate_dir = \"" + filepath.Join(b.TempDir(), "state") + "\"\nkey = \"" + uri +
		"\"\ncertificate = \"" + certFile + "\"\nlog_level = \"info\"\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
	return p
}

// startUntilConnected starts thingd and returns once it logs the CONNACK
// ("mqtt connected" is logged right after it). A thingd that has not
// connected within 30 s is killed and the benchmark fails.
func startUntilConnected(b *testing.B, bin, cfg string) *exec.Cmd {
	cmd := exec.Command(bin, "run", "--config", cfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	connected := make(chan bool, 1)
	var tail []string // last lines, for the failure message
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			if !seen {
				tail = append(tail, sc.Text())
				if len(tail) > 20 {
					tail = tail[1:]
				}
				if strings.Contains(sc.Text(), "mqtt connected") {
					seen = true
					connected <- true
				}
			}
		}
		if !seen {
			connected <- false
		}
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case ok := <-connected:
		if ok {
			return cmd
		}
		cmd.Wait()
		b.Fatalf("thingd exited before connecting:\n%s", strings.Join(tail, "\n"))
	case <-timer.C:
		cmd.Process.Kill()
		<-connected // the reader ends when the pipe closes
		cmd.Wait()
		b.Fatalf("thingd did not connect within 30s:\n%s", strings.Join(tail, "\n"))
	}
	return nil
}

func stopProc(cmd *exec.Cmd) {
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
}

// BenchmarkStartToConnack measures process start → CONNACK of thingd
// against thingsim with a SoftHSM key and with a file key.
func BenchmarkStartToConnack(b *testing.B) {
	bin := thingdForBench(b)
	for _, kind := range []string{"softhsm", "file"} {
		b.Run(kind, func(b *testing.B) {
			s := simtest.Start(b)
			var uri string
			if kind == "softhsm" {
				uri = keystoretest.NewSoftHSMToken(b, "thingd").URI("device")
			} else {
				uri = "file:" + filepath.Join(b.TempDir(), "key.pem")
			}
			cfg := benchConfig(b, s, uri, benchDevice(b, s, uri))
			b.ResetTimer()
			for b.Loop() {
				cmd := startUntilConnected(b, bin, cfg)
				b.StopTimer()
				stopProc(cmd)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkIdleRSS reports the resident memory (VmRSS) of thingd connected
// to thingsim with a SoftHSM key and left idle for 2 s; each iteration reads
// /proc/PID/status again and the largest value is reported, so -benchtime
// only sets how many samples are taken, not how long thingd runs.
func BenchmarkIdleRSS(b *testing.B) {
	bin := thingdForBench(b)
	s := simtest.Start(b)
	uri := keystoretest.NewSoftHSMToken(b, "thingd").URI("device")
	cfg := benchConfig(b, s, uri, benchDevice(b, s, uri))
	cmd := startUntilConnected(b, bin, cfg)
	defer stopProc(cmd)
	time.Sleep(2 * time.Second)
	var rss int
	for b.Loop() {
		rss = max(rss, vmRSSKiB(b, cmd.Process.Pid))
	}
	b.ReportMetric(float64(rss)/1024, "MiB-RSS")
	b.ReportMetric(0, "ns/op") // reading /proc is not a figure
}

// BenchmarkRotation measures a certificate rotation end to end with a
// SoftHSM key against thingsim: from the job being queued (the notify-next
// goes out then) to the execution reaching SUCCEEDED, as thingsim's own
// queuedAt and lastUpdatedAt timestamps (ms) say. It reports p50 and p99
// (ns/op includes a 1 s pause per rotation and is not the figure).
func BenchmarkRotation(b *testing.B) {
	bin := thingdForBench(b)
	s := simtest.Start(b)
	uri := keystoretest.NewSoftHSMToken(b, "thingd").URI("device")
	cfg := benchConfig(b, s, uri, benchDevice(b, s, uri))
	cmd := startUntilConnected(b, bin, cfg)
	defer stopProc(cmd)
	var durations []time.Duration
	n := 0
	for b.Loop() {
		n++
		job := "bench-" + strconv.Itoa(n)
		s.CreateJob(b, job, "gw-1", `{"operation": "rotate-certificate"}`)
		ex := s.WaitJobExecution(b, "gw-1", job, "SUCCEEDED", 60*time.Second)
		durations = append(durations, time.Duration((ex.LastUpdatedAt-ex.QueuedAt)*float64(time.Second)))
		// thingd refuses a certificate that does not expire later than the
		// current one, and thingsim's validity has whole seconds.
		time.Sleep(time.Second)
	}
	slices.Sort(durations)
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(durations)))) - 1
		return float64(durations[max(i, 0)]) / float64(time.Millisecond)
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

func vmRSSKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
