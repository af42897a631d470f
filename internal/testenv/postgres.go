package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// PostgresEnv names the PostgreSQL server DSN the "postgres" store variant
// reads (stores/sqlstores.PostgresEnv; this package imports no store).
const PostgresEnv = "BADMAC_POSTGRES_DSN"

// ErrMissing marks a prerequisite that is not on the machine (as opposed to
// one that is there and failed): a test reports it with Missing.
var ErrMissing = errors.New("missing")

// pg is this test binary's own PostgreSQL cluster, started on first use.
var pg struct {
	once  sync.Once
	dsn   string
	err   error
	mu    sync.Mutex
	watch *exec.Cmd      // the watchdog: destroys the cluster when its stdin closes
	pipe  io.WriteCloser // its stdin; this process holds the only write end
	dir   string         // the cluster's data directory
}

// Postgres returns a PostgreSQL server DSN: $BADMAC_POSTGRES_DSN if set;
// else, when the PostgreSQL server binaries are installed, the DSN of a
// throwaway cluster this test binary starts once, on loopback, a free port
// and a temporary data directory, with scripts/postgres.sh (the same code
// a user runs; it runs the server as an unprivileged user when we are
// root). It sets $BADMAC_POSTGRES_DSN in this process, so the stores and
// child processes find it. The cluster is stopped and its directory
// deleted when the test binary exits, however it exits: a watchdog process
// waits for its stdin, whose write end only this process holds, to close.
// Main (or StopPostgres) stops it before exit and waits.
//
// The error wraps ErrMissing when the server binaries are not installed.
func Postgres() (string, error) {
	if dsn := os.Getenv(PostgresEnv); dsn != "" {
		return dsn, nil
	}
	pg.once.Do(func() {
		pg.dsn, pg.err = startPostgres()
		if pg.err == nil {
			pg.err = os.Setenv(PostgresEnv, pg.dsn)
			fmt.Fprintf(os.Stderr, "testenv: PostgreSQL cluster for this test binary at %s, data in %s (removed at exit)\n", pg.dsn, PostgresDir())
		}
	})
	if pg.err != nil {
		return "", pg.err
	}
	return pg.dsn, nil
}

// PostgresDSN is Postgres for a test: a missing server is Missing (a skip,
// a failure under CI=true), any other error fails the test.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn, err := Postgres()
	need(t, err)
	return dsn
}

// need reports a helper's error: ErrMissing as Missing, any other as a
// failure.
func need(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrMissing) {
		Missing(t, err.Error())
	} else if err != nil {
		t.Fatal(err)
	}
}

// StopPostgres stops the cluster Postgres started, if any, and waits until
// its directory is gone. Later calls to Postgres return an error.
func StopPostgres() error {
	pg.once.Do(func() { pg.err = errors.New("testenv: PostgreSQL asked for after StopPostgres") })
	pg.mu.Lock()
	defer pg.mu.Unlock()
	if pg.watch == nil {
		return nil
	}
	pg.pipe.Close()
	err := pg.watch.Wait()
	pg.watch = nil
	if err != nil {
		return fmt.Errorf("testenv: stopping the PostgreSQL cluster in %s: %w", pg.dir, err)
	}
	return nil
}

// Main runs the tests, then each shutdown (say, dropping the databases the
// tests made), then stops what the helpers started. A TestMain ends with
// os.Exit(testenv.Main(m)).
func Main(m *testing.M, shutdown ...func() error) int {
	code := m.Run()
	for _, f := range shutdown {
		if err := f(); err != nil {
			fmt.Fprintln(os.Stderr, "shutdown:", err)
			code = 1
		}
	}
	if err := StopPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}

var exportLine = regexp.MustCompile(`(?m)^export ` + PostgresEnv + `='([^']+)'$`)

func startPostgres() (string, error) {
	script, err := repoFile("scripts", "postgres.sh")
	if err != nil {
		return "", err
	}
	if _, err := exec.LookPath("bash"); err != nil {
		return "", fmt.Errorf("%w: bash is not on the PATH (scripts/postgres.sh needs it), and %s is unset", ErrMissing, PostgresEnv)
	}
	if out, err := exec.Command("bash", script, "bin").Output(); err != nil {
		return "", fmt.Errorf("%w: no PostgreSQL server binaries (initdb, pg_ctl; Debian: apt-get install postgresql) and %s is unset", ErrMissing, PostgresEnv)
	} else if len(bytes.TrimSpace(out)) == 0 {
		return "", fmt.Errorf("testenv: %s bin printed nothing", script)
	}
	// Directly under the temporary directory: when we are root the server
	// runs as another user, which must reach it.
	dir, err := os.MkdirTemp("", "badmac-pg-test-")
	if err != nil {
		return "", err
	}
	env := append(os.Environ(), "BADMAC_PG_DIR="+dir)
	// The watchdog first, so a crash while starting leaves nothing behind.
	watch := exec.Command("bash", "-c", `cat >/dev/null; exec bash "$0" destroy`, script)
	watch.Env = env
	watch.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a ^C to go test reaches us, not it
	pipe, err := watch.StdinPipe()
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	if err := watch.Start(); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	pg.mu.Lock()
	pg.watch, pg.pipe, pg.dir = watch, pipe, dir
	pg.mu.Unlock()

	// A free port can be taken by another process before the server binds
	// it (another test binary doing the same): then try another.
	var last []byte
	for range 3 {
		port, err := freePort()
		if err != nil {
			return "", err
		}
		cmd := exec.Command("bash", script, "start")
		cmd.Env = append(env, "BADMAC_PG_PORT="+strconv.Itoa(port))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			if m := exportLine.FindSubmatch(out); m != nil {
				return string(m[1]), nil
			}
			return "", fmt.Errorf("testenv: %s start printed no export line:\n%s", script, out)
		}
		last = stderr.Bytes()
	}
	return "", fmt.Errorf("testenv: could not start a PostgreSQL cluster in %s:\n%s", dir, tail(last, 20))
}

// PostgresDir is the data directory of the cluster this binary started
// ("" if none): its tests check that it goes away.
func PostgresDir() string {
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return pg.dir
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// repoFile finds a file of this checkout by its path from the root: above
// the working directory (tests run in their package's directory), else
// above this source file.
func repoFile(elem ...string) (string, error) {
	rel := filepath.Join(elem...)
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if _, self, _, ok := runtime.Caller(0); ok && filepath.IsAbs(self) {
		starts = append(starts, filepath.Dir(self))
	}
	for _, d := range starts {
		for ; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				if _, err := os.Stat(filepath.Join(d, rel)); err == nil {
					return filepath.Join(d, rel), nil
				}
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return "", fmt.Errorf("%w: %s not found above the working directory (run the tests from a badmac checkout)", ErrMissing, rel)
}
