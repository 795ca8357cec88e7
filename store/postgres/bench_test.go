package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/pkid/pkid/store/postgres/pgtest"
)

// BenchmarkIssueWrites is one certificate's writes (reserve, then finalize
// with its audit entry) from 16×GOMAXPROCS concurrent issuers, on one node
// and on two nodes sharing the database (half the issuers each) — the
// counterpart of store/sqlite's benchmark of the same name. The server
// syncs every commit (fsync on, synchronous_commit on).
func BenchmarkIssueWrites(b *testing.B) {
	for _, nodes := range []int{1, 2} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			ctx := context.Background()
			srv := pgtest.StartServer(b)
			dsn := srv.NewDatabase(b)
			dbs := make([]*DB, nodes)
			for k := range dbs {
				dbs[k] = openDB(b, dsn, srv.Password())
				defer dbs[k].Close(ctx)
			}
			var n atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := int(n.Add(1))
					d := dbs[k%nodes]
					c := newCert(k, fmt.Sprintf("node-%d", k%nodes))
					if err := d.Reserve(ctx, c); err != nil {
						b.Fatal(err)
					}
					if err := d.Finalize(ctx, c.ID, []byte{1}, issued(k)); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.StopTimer()
			var writes, commits int64
			for _, d := range dbs {
				st := d.Stats()
				writes, commits = writes+st.Writes, commits+st.Commits
			}
			b.ReportMetric(float64(writes)/float64(commits), "writes/commit")
		})
	}
}
