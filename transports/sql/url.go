package sql

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/b2131a45/eventkit/transports/internal/redact"
	"github.com/b2131a45/eventkit/transports/internal/urlopt"
)

// postgresOptions are the libpq and pgx connection parameters handed to
// pgx unchanged.
var postgresOptions = []string{
	"sslmode", "sslkey", "sslcert", "sslrootcert", "sslpassword", "sslsni", "sslnegotiation",
	"sslcertmode", "channel_binding", "require_auth", "connect_timeout", "target_session_attrs",
	"application_name", "search_path", "krbsrvname", "krbspn", "service", "servicefile", "passfile",
	"min_protocol_version", "max_protocol_version",
	"default_query_exec_mode", "statement_cache_capacity", "description_cache_capacity",
}

// Source is a database to open, read from a URL by ParseURL: the
// transport's Config and the connection settings. Set Config.Logger before
// Open to receive the logs.
type Source struct {
	Config Config
	// MaxOpenConns caps the connection pool; 0 means no cap. Each active
	// subscription holds one connection while it hands over a batch, so a
	// cap below the number of subscriptions makes them wait for each other.
	MaxOpenConns int

	postgres *pgx.ConnConfig
	mysql    *mysql.Config
	password string
}

// ParseURL reads a database URL:
//
//	postgres://user:password@host:port/database?options   (also postgresql://)
//	mysql://user:password@host:port/database?options
//
// Transport options, in the query of both:
//
//	poll_interval     Config.PollInterval, e.g. 50ms
//	resend_interval   Config.ResendInterval
//	ack_deadline      Config.AckDeadline
//	batch_size        Config.BatchSize
//	max_open_conns    Source.MaxOpenConns
//	delay_table       Config.DelayTable
//
// PostgreSQL URLs also take the libpq parameters pgx knows (sslmode,
// sslrootcert, connect_timeout, application_name, search_path, ...).
// MySQL URLs take tls (true, false, skip-verify, preferred), timeout,
// read_timeout and write_timeout; the driver is set to parse times. Any
// other parameter is an error. Errors never contain the password.
func ParseURL(rawURL string) (Source, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Source{}, errors.New("malformed URL (are special characters in the user and password percent-encoded?)")
	}
	password, _ := u.User.Password()
	secrets := redact.New(password)
	if u.Hostname() == "" {
		return Source{}, errors.New("missing host")
	}

	var src Source
	opts := urlopt.New(u.Query())
	opts.Duration("poll_interval", &src.Config.PollInterval)
	opts.Duration("resend_interval", &src.Config.ResendInterval)
	opts.Duration("ack_deadline", &src.Config.AckDeadline)
	opts.Int("batch_size", &src.Config.BatchSize)
	opts.Int("max_open_conns", &src.MaxOpenConns)
	opts.String("delay_table", &src.Config.DelayTable)

	switch u.Scheme {
	case "postgres", "postgresql":
		src.Config.Dialect = Postgres
		opts.Pass(postgresOptions...)
		if err := opts.Err(); err != nil {
			return Source{}, err
		}
		clean := *u
		clean.RawQuery = opts.Passed().Encode()
		src.postgres, err = pgx.ParseConfig(clean.String())
		if err != nil {
			return Source{}, secrets.Error(fmt.Errorf("postgres URL: %w", err))
		}
	case "mysql":
		src.Config.Dialect = MySQL
		var tlsMode string
		var timeout, readTimeout, writeTimeout time.Duration
		opts.String("tls", &tlsMode, "true", "false", "skip-verify", "preferred")
		opts.Duration("timeout", &timeout)
		opts.Duration("read_timeout", &readTimeout)
		opts.Duration("write_timeout", &writeTimeout)
		if err := opts.Err(); err != nil {
			return Source{}, err
		}
		database := strings.TrimPrefix(u.Path, "/")
		if database == "" || strings.Contains(database, "/") {
			return Source{}, errors.New("missing database name: want mysql://user:password@host:port/database")
		}
		port := u.Port()
		if port == "" {
			port = "3306"
		}
		my := mysql.NewConfig()
		my.User = u.User.Username()
		my.Passwd = password
		my.Net = "tcp"
		my.Addr = net.JoinHostPort(u.Hostname(), port)
		my.DBName = database
		my.ParseTime = true
		my.TLSConfig = tlsMode
		my.Timeout, my.ReadTimeout, my.WriteTimeout = timeout, readTimeout, writeTimeout
		if _, err := mysql.NewConnector(my); err != nil {
			return Source{}, secrets.Error(fmt.Errorf("mysql URL: %w", err))
		}
		src.mysql = my
	default:
		return Source{}, fmt.Errorf("scheme %q is not postgres, postgresql or mysql", u.Scheme)
	}
	if err := src.Config.validate(); err != nil {
		return Source{}, err
	}
	src.password = password
	return src, nil
}

// OpenDB returns a connection pool for the source's database, capped at
// MaxOpenConns, for the caller to own. It does not connect yet.
func (s Source) OpenDB() (*sql.DB, error) {
	var connector driver.Connector
	switch {
	case s.postgres != nil:
		connector = stdlib.GetConnector(*s.postgres)
	case s.mysql != nil:
		my := s.mysql.Clone()
		my.Logger = mysqlLogger{redact.New(s.password).Logger(s.Config.Logger)}
		var err error
		if connector, err = mysql.NewConnector(my); err != nil {
			return nil, redact.New(s.password).Error(fmt.Errorf("sql: %w", err))
		}
	default:
		return nil, errors.New("sql: the Source was not made by ParseURL")
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(s.MaxOpenConns)
	return db, nil
}

// mysqlLogger sends the MySQL driver's messages to slog.
type mysqlLogger struct{ l *slog.Logger }

func (m mysqlLogger) Print(v ...any) { m.l.Warn("mysql driver: " + fmt.Sprint(v...)) }
