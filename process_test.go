package dwcp

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/dwcp/dwcp/amst"
	"github.com/dwcp/dwcp/metrics"
)

// TestHelperDestinationProcess is not a test: TestCrossProcess runs the test
// binary again with DWCP_HELPER_DEST=1 to get a destination engine in its
// own process. It prints "ADDR <address>", serves one migration, prints
// "RESULT <verified> <memory hash>" and, with the guest resumed, the hash of
// the memory it actually holds, read back page by page.
func TestHelperDestinationProcess(t *testing.T) {
	if os.Getenv("DWCP_HELPER_DEST") != "1" {
		t.Skip("helper process for TestCrossProcess")
	}
	m := metrics.New(nil)
	cfg := WithComponents(Config{NodeID: "dst-process", Metrics: m,
		Transport: &AMSTTransport{Config: amst.Config{LingerTimeout: 2 * time.Second}, Metrics: m}}, m)
	var guest *SyntheticVM
	cfg.Incoming = func(ctx context.Context, spec IncomingSpec) (IncomingMemory, error) {
		vm, err := NewIncomingSyntheticVM(spec, SyntheticConfig{})
		guest = vm
		return vm, err
	}
	e, err := New(cfg)
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	defer e.Close()
	l, err := cfg.Transport.Listen("127.0.0.1:0")
	if err != nil {
		fmt.Println("ERROR", err)
		return
	}
	defer l.Close()
	fmt.Println("ADDR", l.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e.Serve(ctx, l, func(r *Result, err error) {
		defer cancel()
		if err != nil {
			fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " "))
			return
		}
		guest.Pause(ctx)
		fmt.Printf("RESULT %v %016x %016x\n", r.Verified, r.MemoryHash, hashGuest(guest))
	})
}

// hashGuest recomputes the whole-memory hash from the memory itself.
func hashGuest(g GuestMemory) uint64 {
	hashes := make([]uint64, g.PageCount())
	buf := make([]byte, g.PageSize())
	for i := range hashes {
		g.ReadPage(i, buf)
		hashes[i] = xxhash.Sum64(buf)
	}
	return memoryHash(hashes)
}

// TestCrossProcess migrates to a destination engine in another process,
// over amst on loopback, for both versions; the destination reads back its
// memory and the hash must equal the source's.
func TestCrossProcess(t *testing.T) {
	if os.Getenv("DWCP_HELPER_DEST") == "1" {
		t.Skip("inside the helper")
	}
	for _, v := range []Version{V1, V3} {
		t.Run(v.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperDestinationProcess$", "-test.v")
			cmd.Env = append(os.Environ(), "DWCP_HELPER_DEST=1")
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			expect := func(prefix string) string {
				for l := range lines {
					if strings.HasPrefix(l, "ERROR") {
						t.Fatalf("destination process: %s", l)
					}
					if strings.HasPrefix(l, prefix+" ") {
						return strings.TrimPrefix(l, prefix+" ")
					}
				}
				t.Fatalf("destination process ended without %s", prefix)
				return ""
			}
			addr := expect("ADDR")
			m := metrics.New(nil)
			src, err := New(WithComponents(Config{NodeID: "src-process", Metrics: m,
				Transport: &AMSTTransport{Config: amst.Config{LingerTimeout: 2 * time.Second}, Metrics: m}}, m))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			vm := newTestVM(t, 8<<20, 1<<20, PatternHotSet)
			res, err := src.Migrate(ctx, MigrationRequest{VMID: "vm-xp", Memory: vm, Destination: addr, Version: v})
			if err != nil {
				t.Fatal(err)
			}
			got := expect("RESULT")
			want := fmt.Sprintf("true %016x %016x", res.MemoryHash, hashGuest(vm))
			if got != want {
				t.Fatalf("destination process reports %q, source %q", got, want)
			}
		})
	}
}
