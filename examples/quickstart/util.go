package main

import (
	"log/slog"
	"net/url"
)

// redacted hides the password of a database URL.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	return u.Redacted()
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }
