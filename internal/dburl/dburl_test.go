package dburl_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b2131a45/eventkit/internal/dburl"
)

func TestOpenSQLite(t *testing.T) {
	t.Parallel()
	db, err := dburl.Open("sqlite:" + filepath.Join(t.TempDir(), "x.db"))
	require.NoError(t, err)
	defer db.Close()
	var mode string
	require.NoError(t, db.QueryRow("PRAGMA journal_mode").Scan(&mode))
	assert.Equal(t, "wal", mode)
}

func TestOpenRejectsBadURLsWithoutLeakingPasswords(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"sqlite:",
		"redis://user:s3cret-pw@host/0",
		"mysql://user:s3cret-pw@host:3306/",
		"postgres://user:s3cret-pw@/db",
	} {
		_, err := dburl.Open(u)
		require.Error(t, err, u)
		assert.False(t, strings.Contains(err.Error(), "s3cret-pw"), "%s: %v", u, err)
	}
}
