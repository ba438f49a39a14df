package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// result is one median of the run, eventkit's and the comparison's.
type result struct {
	Group         string  `json:"group"` // drain, direct, latency, consume, recover, backlog
	Label         string  `json:"label"`
	Eventkit      float64 `json:"eventkit"`
	EventkitLabel string  `json:"eventkit_label,omitempty"` // what Eventkit is; "eventkit" when empty
	Stock         float64 `json:"stock"`                    // 0: none
	StockLabel    string  `json:"stock_label,omitempty"`    // what Stock is; "stock" when empty
	Unit          string  `json:"unit"`
	HigherBetter  bool    `json:"higher_better"`
	// SameRound, when set, is the median of the ratios of the same rounds
	// (what Met is judged on), shown beside the ratio of the medians.
	SameRound float64 `json:"same_round,omitempty"`
	Target    string  `json:"target,omitempty"`
	Met       bool    `json:"met"`
}

func (b *bench) record(r result) { b.results = append(b.results, r) }

// summary prints every median as a Markdown table.
func (b *bench) summary() {
	if len(b.results) == 0 || b.o.resultsTo != "" {
		return
	}
	fmt.Printf("\n== summary (medians of %d runs) ==\n\n", b.o.runs)
	fmt.Printf("| scenario | eventkit | stock | ratio | target |\n|---|---|---|---|---|\n")
	for _, r := range b.results {
		stock, rat := "", ""
		if r.Stock != 0 {
			stock = value(r.Stock, r.Unit)
			if r.StockLabel != "" {
				stock += " (" + r.StockLabel + ")"
			}
			if r.HigherBetter {
				rat = ratio(r.Eventkit, r.Stock)
			} else {
				rat = ratio(r.Stock, r.Eventkit) + " lower"
			}
			if r.SameRound != 0 {
				rat += fmt.Sprintf(" (same rounds: %.2f)", r.SameRound)
			}
		}
		target := r.Target
		if target != "" {
			target += " " + pass(r.Met)
		}
		ek := value(r.Eventkit, r.Unit)
		if r.EventkitLabel != "" {
			ek += " (" + r.EventkitLabel + ")"
		}
		fmt.Printf("| %s | %s | %s | %s | %s |\n", r.Label, ek, stock, rat, target)
	}
}

func value(v float64, unit string) string {
	switch unit {
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	case "MB":
		return fmt.Sprintf("%.1f MB", v)
	default:
		return thousands(v) + "/s"
	}
}

// thousands formats v rounded, with commas.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func (b *bench) writeResults(path string) error {
	data, err := json.MarshalIndent(b.results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func (b *bench) readResults(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var rs []result
	if err := json.Unmarshal(data, &rs); err != nil {
		return err
	}
	b.results = append(b.results, rs...)
	return nil
}
