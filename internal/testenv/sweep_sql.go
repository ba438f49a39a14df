package testenv

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// connectTimeout bounds the connection to each service of a sweep.
const connectTimeout = 5 * time.Second

// userSchemas is the SQL condition on n.nspname of PostgreSQL's own schemas.
const userSchemas = `n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'`

// sweepPostgres drops the schemas, relations (tables, views, sequences) and
// routines whose names contain one of names, in every schema of the
// database of PostgresURL.
func sweepPostgres(ctx context.Context, names []string, rep *report) error {
	db, err := sql.Open("pgx", PostgresURL())
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range []string{`SET lock_timeout = '10s'`, `SET statement_timeout = '60s'`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	var drops []drop
	schemas, err := query(ctx, conn, `SELECT n.nspname FROM pg_namespace n WHERE `+userSchemas)
	if err != nil {
		return err
	}
	for _, s := range schemas {
		if owned(s[0], names) {
			drops = append(drops, drop{"schema", s[0], `DROP SCHEMA IF EXISTS ` + pgIdent(s[0]) + ` CASCADE`})
		}
	}
	// Tables first: dropping one drops its sequences, indexes, triggers
	// (the sequences a table owns are not listed).
	rels, err := query(ctx, conn, `SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S') AND `+userSchemas+`
		AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d
			WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
		ORDER BY c.relkind IN ('r', 'p', 'f') DESC, c.relkind`)
	if err != nil {
		return err
	}
	for _, r := range rels {
		if owned(r[1], names) && !owned(r[0], names) {
			kind := map[string]string{"r": "TABLE", "p": "TABLE", "f": "FOREIGN TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}[r[2]]
			drops = append(drops, drop{strings.ToLower(kind), r[0] + "." + r[1],
				`DROP ` + kind + ` IF EXISTS ` + pgIdent(r[0]) + `.` + pgIdent(r[1]) + ` CASCADE`})
		}
	}
	routines, err := query(ctx, conn, `SELECT n.nspname, p.proname, p.oid::regprocedure::text FROM pg_proc p
		JOIN pg_namespace n ON n.oid = p.pronamespace WHERE `+userSchemas)
	if err != nil {
		return err
	}
	for _, r := range routines {
		if owned(r[1], names) && !owned(r[0], names) {
			// regprocedure is the signature, qualified when off the search path.
			drops = append(drops, drop{"function", r[0] + "." + r[1], `DROP ROUTINE IF EXISTS ` + r[2] + ` CASCADE`})
		}
	}
	run(ctx, conn, "PostgreSQL", drops, rep)
	return nil
}

// sweepMySQL drops the databases whose names contain one of names, and the
// tables and views of the database of MySQLURL.
func sweepMySQL(ctx context.Context, names []string, rep *report) error {
	cfg, err := mysqlConfig(MySQLURL())
	if err != nil {
		return err
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	conn, err := connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, q := range []string{`SET SESSION lock_wait_timeout = 10`, `SET SESSION foreign_key_checks = 0`} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	var drops []drop
	dbs, err := query(ctx, conn, `SELECT schema_name FROM information_schema.schemata`)
	if err != nil {
		return err
	}
	for _, d := range dbs {
		if owned(d[0], names) && d[0] != cfg.DBName {
			drops = append(drops, drop{"database", d[0], `DROP DATABASE IF EXISTS ` + myIdent(d[0])})
		}
	}
	tables, err := query(ctx, conn, `SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = DATABASE()`)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if owned(t[0], names) {
			kind := "TABLE"
			if t[1] == "VIEW" {
				kind = "VIEW"
			}
			drops = append(drops, drop{strings.ToLower(kind), t[0], `DROP ` + kind + ` IF EXISTS ` + myIdent(t[0])})
		}
	}
	run(ctx, conn, "MariaDB", drops, rep)
	return nil
}

// drop is one statement of a sweep and what it removes.
type drop struct{ kind, name, stmt string }

func run(ctx context.Context, conn *sql.Conn, service string, drops []drop, rep *report) {
	for _, d := range drops {
		if _, err := conn.ExecContext(ctx, d.stmt); err != nil {
			rep.fail(fmt.Errorf("%s: drop %s %s: %w", service, d.kind, d.name, err))
			continue
		}
		rep.remove(service+" "+d.kind, d.name)
	}
}

// connect returns one connection of db, or errDown.
func connect(ctx context.Context, db *sql.DB) (*sql.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := db.Conn(cctx)
	if err == nil {
		err = conn.PingContext(cctx)
		if err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errDown, err)
	}
	return conn, nil
}

// query returns the rows of q as strings.
func query(ctx context.Context, conn *sql.Conn, q string) ([][]string, error) {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]string
	for rows.Next() {
		row := make([]string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range row {
			ptrs[i] = &row[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// mysqlConfig turns a mysql:// URL (as MySQLURL and transports.Open take
// it) into a driver config.
func mysqlConfig(raw string) (*mysql.Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("EVENTKIT_MYSQL_URL: %w", err)
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net, cfg.Addr = "tcp", u.Host
	if u.Port() == "" {
		cfg.Addr = u.Host + ":3306"
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	cfg.Timeout = connectTimeout
	return cfg, nil
}

func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func myIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }
