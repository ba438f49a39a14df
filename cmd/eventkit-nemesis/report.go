package main

import (
	"fmt"
	"strings"
	"time"
)

// report is what one run did and what the checker found.
type report struct {
	Seed      uint64         `json:"seed"`
	Duration  time.Duration  `json:"duration_ns"`
	Rate      int            `json:"rate"`
	Faulted   time.Duration  `json:"faulted_ns"`
	Drain     time.Duration  `json:"drain_ns"`
	Attempted int            `json:"orders_attempted"`
	Failed    int            `json:"orders_unanswered"`
	Starts    int            `json:"process_starts"`
	Crashes   int            `json:"process_exits_unasked"`
	Faults    []faultEvent   `json:"faults"`
	Kinds     map[string]int `json:"faults_by_kind"`
	Wire      struct {
		Distinct     int `json:"distinct_messages"`
		Duplicates   int `json:"duplicates"`
		Redeliveries int `json:"redeliveries_to_observer"`
		Reconnects   int `json:"observer_reconnects"`
	} `json:"wire"`
	Stops    []string     `json:"graceful_stops"`
	Findings []string     `json:"findings"`
	Check    *checkResult `json:"check"`
}

func (r *report) print(o options) {
	c := r.Check
	fmt.Printf("\n-- report, seed %d --\n", r.Seed)
	fmt.Printf("orders: %d attempted, %d acknowledged, %d unanswered; %d committed (%d poison)\n",
		r.Attempted, c.Acked, r.Failed, c.Committed, c.CommittedPoison)
	var kinds []string
	total := 0
	for _, k := range allKinds() {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, r.Kinds[k]))
		total += r.Kinds[k]
	}
	fmt.Printf("faults: %d in %v: %s\n", total, r.Faulted.Round(time.Second), strings.Join(kinds, ", "))
	fmt.Printf("processes: %d starts, %d exits nobody asked for; graceful stops at the end: %s\n", r.Starts, r.Crashes, strings.Join(r.Stops, ", "))
	fmt.Printf("wire (observer): %d distinct messages, %d duplicates, %d redeliveries to the observer, %d observer reconnects\n",
		r.Wire.Distinct, r.Wire.Duplicates, r.Wire.Redeliveries, r.Wire.Reconnects)
	fmt.Printf("effects: %d stock reservations, %d payments; %d dead letters (%d duplicate dead letters); outboxes %d pending, %d failed; drained in %v\n",
		c.Reservations, c.Payments, c.DeadLetters, c.DLQDuplicates, c.Pending, c.Failed, r.Drain.Round(time.Second))
	for _, f := range r.Findings {
		fmt.Printf("finding: %s\n", f)
	}
	if len(c.Violations) == 0 {
		fmt.Printf("checker: 0 violations\n")
		return
	}
	fmt.Printf("checker: %d VIOLATIONS\n", len(c.Violations))
	for i, v := range c.Violations {
		if i == 50 {
			fmt.Printf("  … and %d more (see -report)\n", len(c.Violations)-50)
			break
		}
		fmt.Printf("  %s\n", v)
	}
	fmt.Printf("replay: go run ./cmd/eventkit-nemesis -seed %d -duration %v -rate %d -poison-every %d%s\n",
		r.Seed, o.duration, o.rate, o.poisonEvery, map[bool]string{true: " -break " + o.breakWhat, false: ""}[o.breakWhat != ""])
}
