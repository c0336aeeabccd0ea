package devstore

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
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

// idIndexSuffix names the index <table>__cf_id, which no index FerretDB
// names (<table>_<index name>) takes unless an index is named "_cf_id".
const idIndexSuffix = "__cf_id"

// indexIDs adds the _id index to the collections' tables of the databases in
// dir until ctx ends. Each pass opens and closes its own connection to each
// database file, so a database dropped (its file removed) holds nothing.
func indexIDs(ctx context.Context, dir string, log func(error)) {
	t := time.NewTicker(idIndexEvery)
	defer t.Stop()
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "*.sqlite"))
		for _, f := range files {
			if err := indexFile(ctx, f); err != nil && ctx.Err() == nil {
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

// indexFile creates the _id index of every collection table of the database
// in file that lacks it.
func indexFile(ctx context.Context, file string) error {
	// mode=rw: never create again a database dropped since the listing.
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(file), RawQuery: "mode=rw&_pragma=busy_timeout(10000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return err
	}
	defer db.Close()
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
		// FerretDB's table names are letters, digits and '_': quoted as it quotes them.
		q := fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %q ON %q (_ferretdb_sjson->'$._id')`, t+idIndexSuffix, t)
		if _, err := db.ExecContext(ctx, q); err != nil && !strings.Contains(err.Error(), "no such table") {
			return err // (a table dropped meanwhile needs no index)
		}
	}
	return nil
}
