package contract

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one embedded schema migration; the number its file name
// starts with is its version.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations reads the migrations in fsys's directory "migrations", in
// order, checking that they are exactly versions 1…latest (so forgetting
// to bump a backend's LatestSchemaVersion, or a gap, fails every Open
// rather than skipping a step).
func Migrations(fsys fs.FS, latest int) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, "migrations")
	if err != nil {
		return nil, fmt.Errorf("reading embedded migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name does not start with its version", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for k, m := range ms {
		if m.Version != k+1 {
			return nil, fmt.Errorf("migration %s: expected version %d", m.Name, k+1)
		}
	}
	if len(ms) != latest {
		return nil, fmt.Errorf("%d migrations embedded, but LatestSchemaVersion is %d", len(ms), latest)
	}
	return ms, nil
}
