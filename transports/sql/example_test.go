package sql_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/b2131a45/eventkit/transports/sql"
)

func ExampleParseURL() {
	src, err := sql.ParseURL("mysql://app:secret@db:3306/events?poll_interval=50ms&max_open_conns=20")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(src.Config.Dialect, src.Config.PollInterval, src.MaxOpenConns)
	// Output: mysql 50ms 20
}

// Opening with a logger; this example needs a database, so it is not run.
func ExampleSource_Open() {
	src, err := sql.ParseURL("postgres://postgres@localhost:5432/app?sslmode=disable")
	if err != nil {
		fmt.Println(err)
		return
	}
	src.Config.Logger = slog.Default()
	t, err := src.Open(context.Background())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer t.Close()
}
