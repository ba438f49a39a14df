// Package compose checks docker-compose.yml and its Kafka override without a
// Docker engine: every service builds or pulls, ports do not clash, every
// URL points at a service that is started, healthy and listening there,
// dependencies start in order, each service waits for exactly what its URLs
// point at (the Kafka variant for nothing of RabbitMQ's), and the broker a
// variant does not use does not start. The files are merged by the compose
// spec's rules, !override and !reset included.
package compose

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const root = "../.."

type service struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     []string          `yaml:"command"`
	Entrypoint  []string          `yaml:"entrypoint"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Profiles    []string          `yaml:"profiles"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// load reads the compose files, merged as docker compose merges them (the
// compose spec's merge rules): mappings merge key by key; sequences are
// appended, except command, entrypoint and healthcheck.test, which the
// later file replaces; a value tagged !override replaces the earlier one
// whole, and !reset removes it. The tags matter: an override cannot drop a
// key of depends_on by leaving it out.
func load(t *testing.T, files ...string) map[string]service {
	t.Helper()
	var merged any
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(root, f))
		require.NoError(t, err)
		var node yaml.Node
		require.NoError(t, yaml.Unmarshal(raw, &node), f)
		tags := map[string]string{}
		collectTags(&node, "", tags)
		var doc map[string]any
		require.NoError(t, node.Decode(&doc), f)
		merged = merge(merged, doc, "", tags)
	}
	out, err := yaml.Marshal(merged.(map[string]any)["services"])
	require.NoError(t, err)
	var services map[string]service
	require.NoError(t, yaml.Unmarshal(out, &services))
	return services
}

// collectTags records the !override and !reset tags of a document by path
// ("services.orders.depends_on"). yaml.v3 drops unknown tags when it
// decodes into a map, so they are read from the node tree.
func collectTags(n *yaml.Node, path string, tags map[string]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			collectTags(c, path, tags)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			p := key.Value
			if path != "" {
				p = path + "." + key.Value
			}
			if value.Tag == "!override" || value.Tag == "!reset" {
				tags[p] = value.Tag
			}
			collectTags(value, p, tags)
		}
	}
}

// replaced are the sequences a later file replaces instead of appending to
// (the spec's "shell commands"), by their path under a service.
var replaced = regexp.MustCompile(`^services\.[^.]+\.(command|entrypoint|healthcheck\.test)$`)

func merge(a, b any, path string, tags map[string]string) any {
	switch tags[path] {
	case "!override":
		return b
	case "!reset":
		return nil
	}
	switch bv := b.(type) {
	case map[string]any:
		am, ok := a.(map[string]any)
		if !ok {
			am = map[string]any{}
		}
		out := map[string]any{}
		for k, v := range am {
			out[k] = v
		}
		for k, v := range bv {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if m := merge(out[k], v, p, tags); m != nil || tags[p] != "!reset" {
				out[k] = m
			} else {
				delete(out, k)
			}
		}
		return out
	case []any:
		as, ok := a.([]any)
		if !ok || replaced.MatchString(path) {
			return bv
		}
		return append(append([]any{}, as...), bv...)
	default:
		return b
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	base := map[string]any{"services": map[string]any{"a": map[string]any{
		"depends_on": map[string]any{"x": 1, "y": 1},
		"command":    []any{"run"},
		"profiles":   []any{"p"},
		"ports":      []any{"1:1"},
	}}}
	over := map[string]any{"services": map[string]any{"a": map[string]any{
		"depends_on": map[string]any{"z": 1},
		"command":    []any{"serve"},
		"profiles":   []any{"q"},
		"ports":      []any{"2:2"},
	}}}
	for name, tc := range map[string]struct {
		tags map[string]string
		want map[string]any
	}{
		"mappings merge, sequences append, commands are replaced": {
			tags: map[string]string{},
			want: map[string]any{"depends_on": map[string]any{"x": 1, "y": 1, "z": 1}, "command": []any{"serve"},
				"profiles": []any{"p", "q"}, "ports": []any{"1:1", "2:2"}},
		},
		"!override replaces": {
			tags: map[string]string{"services.a.depends_on": "!override", "services.a.ports": "!override"},
			want: map[string]any{"depends_on": map[string]any{"z": 1}, "command": []any{"serve"},
				"profiles": []any{"p", "q"}, "ports": []any{"2:2"}},
		},
		"!reset removes": {
			tags: map[string]string{"services.a.profiles": "!reset"},
			want: map[string]any{"depends_on": map[string]any{"x": 1, "y": 1, "z": 1}, "command": []any{"serve"},
				"ports": []any{"1:1", "2:2"}},
		},
	} {
		t.Run(name, func(t *testing.T) {
			got := merge(base, over, "", tc.tags).(map[string]any)["services"].(map[string]any)["a"]
			assert.Equal(t, tc.want, got)
		})
	}
}

// containerPort returns the container side of a "[ip:]host:container"
// mapping.
func containerPort(mapping string) string {
	parts := strings.Split(mapping, ":")
	return parts[len(parts)-1]
}

// hostPort returns the host side of a "[ip:]host:container" mapping: its
// port, and its address ("" when published on every interface).
func hostPort(mapping string) (ip, port string) {
	parts := strings.Split(mapping, ":")
	if len(parts) == 3 {
		return parts[0], parts[1]
	}
	return "", parts[0]
}

var builtBinary = regexp.MustCompile(`\./(?:examples|cmd)/([a-z-]+)`)

func TestComposeRabbitMQ(t *testing.T) {
	t.Parallel()
	check(t, load(t, "docker-compose.yml"), "rabbitmq")
}

func TestComposeKafkaOverride(t *testing.T) {
	t.Parallel()
	check(t, load(t, "docker-compose.yml", "docker-compose.kafka.yml"), "kafka")
}

func check(t *testing.T, services map[string]service, broker string) {
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	require.NoError(t, err)
	built := map[string]bool{}
	for _, m := range builtBinary.FindAllStringSubmatch(string(dockerfile), -1) {
		built[m[1]] = true
	}

	hostPorts := map[string]string{}
	for name, s := range services {
		t.Run(name, func(t *testing.T) {
			// Image or build, images pinned.
			if s.Build == nil {
				require.NotEmpty(t, s.Image, "neither image nor build")
				assert.Regexp(t, `:[0-9][\w.-]*$`, s.Image, "image must be pinned to a version")
			} else {
				assert.Equal(t, ".", s.Build, "the services build from the one Dockerfile at the root")
				bin := append(append([]string{}, s.Entrypoint...), s.Command...)
				require.NotEmpty(t, bin, "a built service must say which binary it runs")
				assert.True(t, built[strings.TrimPrefix(bin[0], "/app/")], "%s is not built by the Dockerfile", bin[0])
			}
			for _, p := range s.Ports {
				_, host := hostPort(p)
				if other, dup := hostPorts[host]; dup {
					t.Errorf("host port %s used by %s and %s", host, other, name)
				}
				hostPorts[host] = name
			}
			for _, v := range s.Volumes {
				src := strings.Split(v, ":")[0]
				_, err := os.Stat(filepath.Join(root, src))
				assert.NoError(t, err, "volume source %s", src)
			}
			for dep, d := range s.DependsOn {
				ds, ok := services[dep]
				require.True(t, ok, "depends on unknown service %s", dep)
				assert.Empty(t, ds.Profiles, "depends on %s, which only starts with a profile", dep)
				assert.Equal(t, "service_healthy", d.Condition, "wait for %s to be healthy", dep)
				assert.NotNil(t, ds.Healthcheck, "%s has no healthcheck to wait for", dep)
			}
		})
	}

	for _, app := range []string{"orders", "inventory", "payments"} {
		t.Run(app+" wiring", func(t *testing.T) {
			s, ok := services[app]
			require.True(t, ok)
			require.NotNil(t, s.Healthcheck)
			assert.Equal(t, []string{"CMD", "/app/" + app, "healthcheck"}, s.Healthcheck.Test)
			_, port, err := net.SplitHostPort(s.Environment["HTTP_ADDR"])
			require.NoError(t, err)
			require.Len(t, s.Ports, 1)
			assert.Equal(t, port, containerPort(s.Ports[0]), "published port is not the one the service listens on")

			tr := endpoint(t, services, s, "TRANSPORT_URL")
			assert.Equal(t, broker, tr, "TRANSPORT_URL")
			assert.Equal(t, "postgres", endpoint(t, services, s, "DATABASE_URL"))
			assert.ElementsMatch(t, []string{broker, "postgres"}, keys(s.DependsOn),
				"%s must wait for what its URLs point at, and nothing else", app)

			db, err := url.Parse(s.Environment["DATABASE_URL"])
			require.NoError(t, err)
			pg := services["postgres"]
			pass, _ := db.User.Password()
			assert.Equal(t, pg.Environment["POSTGRES_USER"], db.User.Username())
			assert.Equal(t, pg.Environment["POSTGRES_PASSWORD"], pass)
			assert.Equal(t, "/"+pg.Environment["POSTGRES_DB"], db.Path)
			schema := db.Query().Get("search_path")
			initdb, err := os.ReadFile(filepath.Join(root, "examples/compose/initdb.sql"))
			require.NoError(t, err)
			assert.Contains(t, string(initdb), "CREATE SCHEMA IF NOT EXISTS "+schema+";", "schema %s is never created", schema)
		})
	}

	t.Run("cli wiring", func(t *testing.T) {
		s, ok := services["cli"]
		require.True(t, ok)
		assert.Equal(t, broker, endpoint(t, services, s, "EVENTKIT_TRANSPORT"), "EVENTKIT_TRANSPORT")
		assert.Equal(t, "postgres", endpoint(t, services, s, "EVENTKIT_DB"), "EVENTKIT_DB")
		assert.ElementsMatch(t, []string{broker, "postgres"}, keys(s.DependsOn), "the cli must wait for what its URLs point at, and nothing else")
	})

	// The console: eventkit console over the orders schema's outbox and
	// inbox and the broker's dead letters, listening on every interface of
	// its container, published on the host's loopback only, read-only
	// unless the host's EVENTKIT_CONSOLE_TOKEN is set; it starts once orders
	// created its tables.
	t.Run("console wiring", func(t *testing.T) {
		s, ok := services["console"]
		require.True(t, ok)
		assert.Empty(t, s.Profiles, "docker compose up starts it")
		require.GreaterOrEqual(t, len(s.Command), 2)
		assert.Equal(t, []string{"/app/eventkit", "console"}, s.Command[:2])
		listen := flagValue(t, s.Command, "--listen")
		host, port, err := net.SplitHostPort(listen)
		require.NoError(t, err)
		assert.Equal(t, "0.0.0.0", host, "inside its container it must listen beyond loopback to be published at all")
		require.Len(t, s.Ports, 1)
		ip, published := hostPort(s.Ports[0])
		assert.Equal(t, "127.0.0.1", ip, "published on the host's loopback only: %s", s.Ports[0])
		assert.Equal(t, "8089", published)
		assert.Equal(t, port, containerPort(s.Ports[0]), "published port is not the one the console listens on")
		assert.Equal(t, "orders_outbox", flagValue(t, s.Command, "--outbox"))
		assert.Equal(t, "orders_inbox", flagValue(t, s.Command, "--inbox"))
		assert.Equal(t, "${EVENTKIT_CONSOLE_TOKEN:-}", s.Environment["EVENTKIT_CONSOLE_TOKEN"], "the host's token, none by default: read-only")
		assert.Equal(t, broker, endpoint(t, services, s, "EVENTKIT_TRANSPORT"), "EVENTKIT_TRANSPORT")
		assert.Equal(t, "postgres", endpoint(t, services, s, "EVENTKIT_DB"), "EVENTKIT_DB")
		assert.Equal(t, services["orders"].Environment["DATABASE_URL"], s.Environment["EVENTKIT_DB"], "the orders service's database and schema")
		assert.ElementsMatch(t, []string{broker, "postgres", "orders"}, keys(s.DependsOn),
			"the console waits for what its URLs point at and for orders' tables")
	})

	t.Run("the other broker does not start", func(t *testing.T) {
		for _, other := range []string{"rabbitmq", "kafka"} {
			if s, ok := services[other]; ok && other != broker {
				assert.NotEmpty(t, s.Profiles, "%s starts with `docker compose up` though the services use %s", other, broker)
			}
		}
	})
}

// flagValue returns the value after name in a command.
func flagValue(t *testing.T, command []string, name string) string {
	t.Helper()
	i := slices.Index(command, name)
	require.True(t, i >= 0 && i+1 < len(command), "%s in %q", name, command)
	return command[i+1]
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// endpoint checks that the URL in env var key points at a service the app
// depends on (healthy), on a port that service publishes, and returns it.
func endpoint(t *testing.T, services map[string]service, s service, key string) string {
	t.Helper()
	raw := s.Environment[key]
	require.NotEmpty(t, raw, key)
	u, err := url.Parse(raw)
	require.NoError(t, err, key)
	host, port := u.Hostname(), u.Port()
	target, ok := services[host]
	require.True(t, ok, "%s points at %s, which is not a service", key, host)
	_, dep := s.DependsOn[host]
	assert.True(t, dep, "%s points at %s, which the service does not depend on", key, host)
	var listens bool
	for _, p := range target.Ports {
		listens = listens || containerPort(p) == port
	}
	assert.True(t, listens, "%s: %s does not listen on %s", key, host, port)
	return host
}
