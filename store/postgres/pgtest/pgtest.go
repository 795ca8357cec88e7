// Package pgtest runs a real, throw-away PostgreSQL server for tests: the
// store/postgres suite, and any other package's tests (integration tests
// that stop the server under load and start it again); tools/pkid-bench's
// pg part runs one through Launch.
//
// Start finds the server binaries (/usr/lib/postgresql/*/bin, Debian's
// layout, or $PKID_POSTGRES_BIN), makes a private directory, runs initdb
// with a random password (scram-sha-256 for every connection, local and
// TCP), and starts the server on a free port of 127.0.0.1 with its Unix
// socket inside that directory, so it touches nothing outside it and two
// test processes never share a server. initdb refuses to run as root, so
// as root (CI) every server command runs as the unprivileged "postgres"
// user that Debian's postgresql package creates, through `runuser -u
// postgres --`, and the directory is handed to that user.
//
// The bootstrap superuser is "postgres"; tests connect as "pkid", an
// ordinary role that owns its databases (as a production deployment
// would), with the same random password. The server keeps fsync on, so a
// commit costs what it costs in production.
//
// Without PostgreSQL installed, Start skips the test with a message saying
// what to install — unless PKID_REQUIRE_POSTGRES=1, when it fails it, so
// that CI cannot pass by skipping.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled: no PostgreSQL server binaries were found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")

// Required reports whether the tests must have PostgreSQL
// (PKID_REQUIRE_POSTGRES=1) rather than skip without it.
func Required() bool { return os.Getenv("PKID_REQUIRE_POSTGRES") == "1" }

// AppUser is the role tests connect as.
const AppUser = "pkid"

// Server is one running (or stopped) test server.
type Server struct {
	bin      string // directory of initdb, pg_ctl, postgres
	dir      string // everything: data, socket, log, password file
	port     int
	password string
	owner    account // run server commands as this user (name "" = as ourselves)

	mu      sync.Mutex
	nextDB  int
	running bool
}

// Start runs a server for t and returns the DSN of a fresh, empty
// database on it, owned by AppUser, and that role's password. The server
// is stopped and removed when t ends.
func Start(t testing.TB) (dsn, password string) {
	t.Helper()
	s := StartServer(t)
	return s.NewDatabase(t), s.Password()
}

// StartServer runs a server for t, for a test that needs several
// databases or to stop and start the server; it is stopped and removed
// when t ends.
func StartServer(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Launch(ctx)
	if errors.Is(err, ErrNotInstalled) && !Required() {
		t.Skipf("skipping: %v; set PKID_REQUIRE_POSTGRES=1 to make this a failure", err)
	}
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("removing the test PostgreSQL: %v", err)
		}
	})
	return s
}

// Launch runs a server outside any test (a TestMain's): the caller calls
// Close when done. It returns an error wrapping ErrNotInstalled when there
// is no PostgreSQL, which the caller may turn into a skip unless Required.
func Launch(ctx context.Context) (_ *Server, err error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	if s.owner, err = serverUser(); err != nil {
		return nil, err
	}
	if s.dir, err = os.MkdirTemp("", "pkid-pgtest-"); err != nil {
		return nil, fmt.Errorf("making the server directory: %w", err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// initdb, as postgres, must own the directory it creates data in.
	if err := s.handOver(s.dir); err != nil {
		return nil, err
	}
	pw := make([]byte, 16)
	rand.Read(pw)
	s.password = hex.EncodeToString(pw)
	pwFile := filepath.Join(s.dir, "pwfile")
	if err := s.writeOwned(pwFile, []byte(s.password+"\n")); err != nil {
		return nil, err
	}
	// --no-sync: only initdb's own writes skip fsync (a test database need
	// not survive a power cut); the server syncs every commit as usual.
	if out, err := s.run(ctx, "initdb", "-D", s.dataDir(), "-U", "postgres", "--pwfile", pwFile,
		"--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	os.Remove(pwFile)
	// A port free now may be taken before the server binds it: try again.
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		if err = s.Start(ctx); err == nil {
			break
		}
		if attempt == 2 || !strings.Contains(s.log(), "could not bind") {
			return nil, err
		}
	}
	if err := s.admin(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'`, AppUser, s.password)); err != nil {
		return nil, fmt.Errorf("creating role %s: %w", AppUser, err)
	}
	return s, nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logFile() string { return filepath.Join(s.dir, "server.log") }

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logFile())
	return string(b)
}

// Password is the password of both "postgres" and AppUser.
func (s *Server) Password() string { return s.password }

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// DSN is the DSN of database as user, without the password.
func (s *Server) DSN(user, database string) string {
	u := url.URL{Scheme: "postgres", User: url.User(user), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path: "/" + database, RawQuery: "sslmode=disable"}
	return u.String()
}

// NewDatabase creates a fresh database owned by AppUser and returns its
// DSN (without the password).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// Connect opens a connection with the server's password to the database
// dsn names (as NewDatabase returns it), closed when t ends: for a test that
// reads or edits the database behind pkid's back.
func (s *Server) Connect(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := s.connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// CreateDatabase is NewDatabase outside a test.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	s.mu.Lock()
	s.nextDB++
	name := fmt.Sprintf("pkid_%d", s.nextDB)
	s.mu.Unlock()
	if err := s.admin(ctx, fmt.Sprintf(`CREATE DATABASE %s OWNER %s`, name, AppUser)); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return s.DSN(AppUser, name), nil
}

// EnableTLS has the running server accept TLS with the given PEM
// certificate and key (plain connections still work, as the admin ones
// and sslmode=disable DSNs need): for tests of sslmode.
func (s *Server) EnableTLS(ctx context.Context, certPEM, keyPEM []byte) error {
	for name, b := range map[string][]byte{"server.crt": certPEM, "server.key": keyPEM} {
		if err := s.writeOwned(filepath.Join(s.dataDir(), name), b); err != nil {
			return err
		}
	}
	if err := s.admin(ctx, `ALTER SYSTEM SET ssl = on`); err != nil {
		return fmt.Errorf("turning ssl on: %w", err)
	}
	if err := s.admin(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("reloading the configuration: %w", err)
	}
	// The postmaster rereads it when the signal arrives: TLS is on once a
	// connection that requires it gets through.
	tls := strings.Replace(s.DSN("postgres", "postgres"), "sslmode=disable", "sslmode=require", 1)
	for {
		conn, err := s.connect(ctx, tls)
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server did not take TLS connections: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// admin runs statement as the superuser.
func (s *Server) admin(ctx context.Context, statement string) error {
	conn, err := s.connect(ctx, s.DSN("postgres", "postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, statement)
	return err
}

// connect opens a connection to dsn, a DSN of this server, with the
// server's password.
func (s *Server) connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.Password = s.password
	return pgx.ConnectConfig(ctx, cfg)
}

// Start starts the server (again) on its port, and waits until it takes
// connections.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return nil
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories='%s' -c max_connections=100 "+
		"-c shared_buffers=32MB -c fsync=on -c synchronous_commit=on", s.port, s.dir)
	if out, err := s.run(ctx, "pg_ctl", "start", "-w", "-t", "60", "-D", s.dataDir(), "-l", s.logFile(), "-o", opts); err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, tail(s.log(), 2000))
	}
	s.running = true
	return nil
}

// Stop stops the server as an operator would (pg_ctl stop -m fast: open
// sessions are ended and their transactions rolled back), keeping its
// data for Start.
func (s *Server) Stop(ctx context.Context) error { return s.stop(ctx, "fast") }

// Crash stops the server without a shutdown checkpoint (-m immediate), as
// a crash would; Start then recovers from the WAL.
func (s *Server) Crash(ctx context.Context) error { return s.stop(ctx, "immediate") }

func (s *Server) stop(ctx context.Context, mode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	if out, err := s.run(ctx, "pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", s.dataDir()); err != nil {
		return fmt.Errorf("pg_ctl stop: %w\n%s", err, out)
	}
	s.running = false
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if s.port != 0 {
		err = s.stop(ctx, "immediate")
	}
	if s.dir != "" {
		err = errors.Join(err, os.RemoveAll(s.dir))
	}
	return err
}

// run runs one of the server's programs, as the server's user.
func (s *Server) run(ctx context.Context, program string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, program)
	var cmd *exec.Cmd
	if s.owner.name != "" {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.owner.name, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = s.dir
	// The server's environment says nothing about where to connect or
	// which locale to use: only the arguments do.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "HOME=" + s.dir}
	return cmd.CombinedOutput()
}

// findBinaries returns the directory holding initdb and pg_ctl: the newest
// Debian server, or $PKID_POSTGRES_BIN.
func findBinaries() (string, error) {
	if dir := os.Getenv("PKID_POSTGRES_BIN"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("PKID_POSTGRES_BIN=%s: %w: %w", dir, ErrNotInstalled, err)
		}
		return dir, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	var dirs []string
	for _, f := range found {
		if _, err := os.Stat(filepath.Join(filepath.Dir(f), "pg_ctl")); err == nil {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	if len(dirs) == 0 {
		return "", ErrNotInstalled
	}
	version := func(dir string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		return v
	}
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	return dirs[0], nil
}

type account struct {
	name     string
	uid, gid int
}

// writeOwned writes b to path (0600) for the server's user.
func (s *Server) writeOwned(path string, b []byte) error {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return s.handOver(path)
}

// handOver gives path to the server's user, when that is not ourselves.
func (s *Server) handOver(path string) error {
	if s.owner.name == "" {
		return nil
	}
	if err := os.Chown(path, s.owner.uid, s.owner.gid); err != nil {
		return fmt.Errorf("handing %s to %s: %w", path, s.owner.name, err)
	}
	return nil
}

// serverUser is the user server commands run as: none (ourselves) unless
// we are root, whom initdb refuses; then Debian's "postgres".
func serverUser() (account, error) {
	if os.Geteuid() != 0 {
		return account{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return account{}, fmt.Errorf("running as root, the test server needs the unprivileged user postgres "+
			"(created by Debian's postgresql package): %w", err)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return account{}, fmt.Errorf("running as root, the test server needs runuser (util-linux): %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return account{}, fmt.Errorf("user postgres: %w", err)
	}
	return account{name: "postgres", uid: uid, gid: gid}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
