package console

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://app:s3cret@db:5432/orders?sslmode=disable": "postgres://app:xxxxx@db:5432/orders?sslmode=disable",
		"amqp://guest:guest@127.0.0.1:5672/":                   "amqp://guest:xxxxx@127.0.0.1:5672/",
		"mysql://root@127.0.0.1:3306/test":                     "mysql://root@127.0.0.1:3306/test",
		"postgres://u:p@ss#w@rd@db/x":                          "postgres://u:xxxxx@db/x",
		"postgres://u:p/ss@db/x":                               "postgres://u:xxxxx@db/x",
		"postgres://u:pw@db/x?email=a@b.c":                     "postgres://u:xxxxx@b.c",
		"sqlite:/var/lib/app.db":                               "sqlite:/var/lib/app.db",
		"":                                                     "",
	} {
		assert.Equal(t, want, RedactURL(in), in)
	}
}

func TestRedactorMasksSecretsInEveryForm(t *testing.T) {
	t.Parallel()
	r := newRedactor([]string{`pa&ss"w<rd`, "abc"})
	for _, s := range []string{`pa&ss"w<rd`, `pa&amp;ss&#34;w&lt;rd`, `pa%26ss%22w%3Crd`, `pa\u0026ss\"w\u003crd`} {
		assert.Equal(t, "[xxxxx]", r.string("["+s+"]"), s)
	}
	assert.Equal(t, "abc", r.string("abc"), "a short secret is masked inside URLs only")
	assert.Equal(t, "see redis://u:xxxxx@h", r.string("see redis://u:abc@h"))
}

// Failures of one cause fall into one group whatever ids and numbers they
// name; another cause, handler or reason is another group.
func TestGroupKey(t *testing.T) {
	t.Parallel()
	a := groupKey("h", "failed", "order 0190a7e2-1c2b-7d3e-8f4a-5b6c7d8e9f01: sku 17 unknown")
	assert.Equal(t, a, groupKey("h", "failed", "order 0190a7e2-aaaa-7d3e-8f4a-5b6c7d8e9f02: sku 4242 unknown"))
	assert.NotEqual(t, a, groupKey("h", "failed", "order 0190a7e2-1c2b-7d3e-8f4a-5b6c7d8e9f01: card declined"))
	assert.NotEqual(t, a, groupKey("h2", "failed", "order 0190a7e2-1c2b-7d3e-8f4a-5b6c7d8e9f01: sku 17 unknown"))
	assert.NotEqual(t, a, groupKey("h", "permanent", "order 0190a7e2-1c2b-7d3e-8f4a-5b6c7d8e9f01: sku 17 unknown"))
}

func TestPayloadBoundedAndMasked(t *testing.T) {
	t.Parallel()
	m := newMasker([]string{"email", "card.number"})
	s := m.payload([]byte(`{"email":"a@b.c","card":{"number":"4111","exp":"12/30"},"items":[{"email":"x"}]}`), 1024)
	assert.True(t, s.JSON)
	assert.NotContains(t, s.Text, "a@b.c")
	assert.NotContains(t, s.Text, "4111")
	assert.Contains(t, s.Text, `"exp": "12/30"`)
	assert.NotContains(t, s.Text, `"x"`, "a name matches at any depth, through arrays")
	s = m.payload([]byte("not json a@b.c"), 1024)
	assert.Empty(t, s.Text, "with a mask, text that is not JSON is not shown")

	s = newMasker(nil).payload([]byte(strings.Repeat("é", 1000)+"\xff"), 301)
	assert.LessOrEqual(t, len(s.Text), 301)
	assert.True(t, utf8.ValidString(s.Text), "cut on a rune boundary")
	assert.Equal(t, 2001, s.Size)
	assert.Equal(t, 2001, len(s.Text)+s.Cut, "what is cut is counted")
}
