package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// thingsim device links a pseudo-terminal at --link and sends JSON reading
// lines on it until stopped, then removes the link; bad flags are usage
// errors.
func TestDeviceCommand(t *testing.T) {
	for _, args := range [][]string{{"device"}, {"device", "--link", "x", "--kind", "modbus"}, {"device", "--link", "x", "--interval", "1ms"}} {
		if r := runCLI(t, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, r.code)
		}
	}

	link := filepath.Join(t.TempDir(), "ttySENSOR")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"device", "--link", link, "--interval", "50ms"}, &out, &errb) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Lstat(link); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no link at %s; stderr: %s", link, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	f, err := os.Open(link) // the terminal side, in canonical mode: one read per line
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	line, err := bufio.NewReader(f).ReadString('\n')
	f.Close()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var reading map[string]float64
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &reading); err != nil || reading["temperature"] < 15 || reading["humidity"] <= 0 {
		t.Errorf("line %q: %v, %v", line, reading, err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d, stderr: %s", code, errb.String())
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("link left behind after stop: %v", err)
	}
}
