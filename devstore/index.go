package devstore

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // the driver FerretDB itself uses, for the _id indexes
)

// FerretDB v1.24 keeps a collection in a SQLite table with one JSON column
// and looks a document up by _id with the expression _ferretdb_sjson->'$._id'
// (a find of {_id: X}, and every update and delete, one statement a
// document), while the _id index it creates is on _ferretdb_sjson->"_id".
// SQLite matches index expressions as written, so it uses neither index and
// reads the whole table for each of those statements: an update of 100
// documents read the table 100 times. The indexer adds, to every
// collection's table, an index on the expression the statements use.
// It changes no result, only how SQLite finds the rows. (docs/store.md)

// idIndexEvery is how often the indexer looks for tables without the index:
// a new collection goes without it for at most this long.
const idIndexEvery = time.Second

// idIndexSuffix names the index: <table>_id_path.
const idIndexSuffix = "_id_path"

// indexIDs adds the _id index to the collections' tables of the databases in
// dir until ctx ends.
func indexIDs(ctx context.Context, dir string, log func(error)) {
	dbs := map[string]*sql.DB{}
	defer func() {
		for _, db := range dbs {
			db.Close()
		}
	}()
	t := time.NewTicker(idIndexEvery)
	defer t.Stop()
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, f := range files {
			db := dbs[f]
			if db == nil {
				var err error
				db, err = sql.Open("sqlite", "file:"+f+"?_pragma=busy_timeout(10000)")
				if err != nil {
					log(err)
					continue
				}
				db.SetMaxOpenConns(1)
				dbs[f] = db
			}
			if err := indexTables(ctx, db); err != nil && ctx.Err() == nil {
				log(fmt.Errorf("index %s: %w", filepath.Base(f), err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// indexTables creates the _id index of every collection table of db that
// lacks it.
func indexTables(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT c.table_name FROM _ferretdb_collections c
		WHERE NOT EXISTS (SELECT 1 FROM sqlite_master m WHERE m.type = 'index' AND m.name = c.table_name || ?)`, idIndexSuffix)
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return nil // no collection yet: FerretDB creates its metadata table with the first
		}
		return err
	}
	var tables []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, t)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, t := range tables {
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+idIndexSuffix, t)
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.Contains(err.Error(), "no such table") {
			return err // (a table dropped meanwhile needs no index)
		}
	}
	return nil
}
