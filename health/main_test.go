package health_test

import (
	"testing"

	"github.com/b2131a45/eventkit/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
