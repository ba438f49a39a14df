package sample

import (
	"bytes"
	"fmt"
	"net/http"

	"github.com/b2131a45/eventkit/contracts"
)

// AsyncAPIRoutes adds the AsyncAPI 3.0 document of service (one of
// Services(ns)) to mux: GET /asyncapi.json and GET /asyncapi.yaml. The
// document is the one contracts.Export writes with ExportConfig.Service set:
// the service's send and receive operations and the channels and messages
// they use, every registered version of each. It is built once, here, so a
// contract that cannot be exported fails the service at start.
func AsyncAPIRoutes(mux *http.ServeMux, service string, ns Namespace) error {
	snap, err := Contracts(ns)
	if err != nil {
		return fmt.Errorf("%s contracts: %w", service, err)
	}
	for _, f := range []struct {
		path, contentType string
		format            contracts.Format
	}{
		{"GET /asyncapi.json", "application/json", contracts.FormatJSON},
		{"GET /asyncapi.yaml", "application/yaml", contracts.FormatYAML},
	} {
		var doc bytes.Buffer
		cfg := contracts.ExportConfig{Service: service, Description: "The " + service + " sample service.", Format: f.format}
		if err := contracts.Export(&doc, snap, cfg); err != nil {
			return fmt.Errorf("%s contracts: %w", service, err)
		}
		body := doc.Bytes()
		mux.HandleFunc(f.path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", f.contentType)
			_, _ = w.Write(body)
		})
	}
	return nil
}
