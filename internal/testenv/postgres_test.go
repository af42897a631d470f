package testenv

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// pgChild is one test binary that started its own cluster: what it printed
// and how to end it.
type pgChild struct {
	cmd       *exec.Cmd
	stdin     interface{ Close() error }
	dsn, dir  string
	host      string
	collected strings.Builder
}

// startPGChild runs this test binary as a child that calls PostgresDSN with
// no DSN set, prints the DSN and the data directory, and waits for its
// stdin to close before it exits through Main.
func startPGChild(t *testing.T) *pgChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPostgresStartsAndStops$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTENV_CHILD=pg", PostgresEnv+"=", "CI=")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &pgChild{cmd: cmd, stdin: in}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(&c.collected, line)
		if v, ok := strings.CutPrefix(line, "PGCHILD "); ok {
			c.dsn, c.dir, _ = strings.Cut(v, " ")
			break
		}
	}
	if c.dsn == "" {
		cmd.Wait()
		t.Fatalf("the child printed no DSN:\n%s", c.collected.String())
	}
	u, err := url.Parse(c.dsn)
	if err != nil {
		t.Fatal(err)
	}
	c.host = u.Host
	go func() { // drain the rest, so the child never blocks on its output
		for sc.Scan() {
		}
	}()
	return c
}

func dialable(host string) bool {
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Two test binaries at once, each with BADMAC_POSTGRES_DSN unset, each get a
// cluster of their own (both up together, on different ports and
// directories), and each is gone (directory deleted, port closed) after its
// binary has exited: the first through Main; the second SIGKILLed, when
// its watchdog destroys the cluster.
func TestPostgresStartsAndStops(t *testing.T) {
	if os.Getenv("TESTENV_CHILD") == "pg" {
		dsn := PostgresDSN(t)
		if os.Getenv(PostgresEnv) != dsn {
			t.Fatalf("%s = %q, want the cluster's %q", PostgresEnv, os.Getenv(PostgresEnv), dsn)
		}
		fmt.Printf("PGCHILD %s %s\n", dsn, PostgresDir())
		bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes it
		return
	}
	if _, err := exec.Command("bash", "../../scripts/postgres.sh", "bin").Output(); err != nil {
		Missing(t, "no PostgreSQL server binaries (Debian: apt-get install postgresql)")
	}
	a, b := startPGChild(t), startPGChild(t)
	if a.host == b.host || a.dir == b.dir {
		t.Fatalf("two binaries share a cluster: %s in %s and %s in %s", a.host, a.dir, b.host, b.dir)
	}
	for _, c := range []*pgChild{a, b} {
		if !strings.HasPrefix(c.host, "127.0.0.1:") {
			t.Errorf("cluster not on loopback: %s", c.dsn)
		}
		if !dialable(c.host) {
			t.Errorf("cluster %s does not accept connections while its binary runs", c.host)
		}
		if _, err := os.Stat(c.dir + "/PG_VERSION"); err != nil {
			t.Errorf("no cluster in %s: %v", c.dir, err)
		}
	}
	a.stdin.Close()
	if err := a.cmd.Wait(); err != nil {
		t.Errorf("child: %v\n%s", err, a.collected.String())
	}
	if _, err := os.Stat(a.dir); !os.IsNotExist(err) {
		t.Errorf("%s still there after its binary exited (stat: %v)", a.dir, err)
	}
	if dialable(a.host) {
		t.Errorf("%s still accepts connections after its binary exited", a.host)
	}

	// Killed: no Main, no deferred code. The watchdog sees its stdin close
	// and destroys the cluster; wait for that (an event, bounded).
	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(b.dir); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there 2 minutes after its binary was killed", b.dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if dialable(b.host) {
		t.Errorf("%s still accepts connections after its binary was killed and its directory deleted", b.host)
	}
}

// With BADMAC_POSTGRES_DSN set, Postgres returns it and starts nothing.
func TestPostgresEnvWins(t *testing.T) {
	t.Setenv(PostgresEnv, "postgres://u@127.0.0.1:1/x")
	if dsn, err := Postgres(); err != nil || dsn != "postgres://u@127.0.0.1:1/x" {
		t.Fatalf("Postgres() = %q, %v", dsn, err)
	}
	if d := PostgresDir(); d != "" {
		t.Fatalf("a cluster was started in %s", d)
	}
}
