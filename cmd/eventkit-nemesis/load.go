package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

const (
	// sku is what every good order buys; initialStock never runs out.
	sku          = "SKU-1"
	initialStock = 10_000_000
	// poisonSKU is not stocked: inventory dead-letters the order's
	// OrderCreated (a permanent error), on purpose.
	poisonSKU = "SKU-404"
)

// orderEmail encodes what an order is in its customer_email, so that the
// checker can tell from the orders table alone what each committed order
// must have led to, even when its POST was never answered.
func orderEmail(n, quantity int, poison bool) string {
	if poison {
		return fmt.Sprintf("poison-%d@nemesis.test", n)
	}
	return fmt.Sprintf("order-%d-q%d@nemesis.test", n, quantity)
}

// parseEmail is orderEmail's inverse.
func parseEmail(email string) (n, quantity int, poison, ok bool) {
	if _, err := fmt.Sscanf(email, "poison-%d@nemesis.test", &n); err == nil {
		return n, 1, true, true
	}
	if _, err := fmt.Sscanf(email, "order-%d-q%d@nemesis.test", &n, &quantity); err == nil {
		return n, quantity, false, true
	}
	return 0, 0, false, false
}

// load places orders at a steady rate through the orders processes,
// alternating between them, one poison order in every poisonEvery.
type load struct {
	targets     []*proc
	rate        int
	poisonEvery int

	mu        sync.Mutex
	attempted int
	acked     map[string]bool // order id → poison, for every 201 answer
	failed    int             // no answer, or not 201: the order may or may not be committed
}

type placeRequest struct {
	CustomerEmail string      `json:"customer_email"`
	TotalCents    int64       `json:"total_cents"`
	Items         []orderItem `json:"items"`
}

type orderItem struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// run places orders until ctx ends and returns once every request ended.
func (l *load) run(ctx context.Context) {
	l.acked = map[string]bool{}
	client := &http.Client{Timeout: 3 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(l.rate))
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		poison := l.poisonEvery > 0 && n%l.poisonEvery == l.poisonEvery/2
		q := 1 + n%3
		req := placeRequest{CustomerEmail: orderEmail(n, q, poison), TotalCents: int64(100 * q), Items: []orderItem{{SKU: sku, Quantity: q}}}
		if poison {
			req.Items = []orderItem{{SKU: poisonSKU, Quantity: 1}}
		}
		target := l.targets[n%len(l.targets)]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			id, err := place(client, target.http, req)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.attempted++
			if err != nil {
				l.failed++
				return
			}
			l.acked[id] = poison
		})
	}
}

// place posts one order and returns its id if it was answered 201.
func place(client *http.Client, addr string, req placeRequest) (string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	resp, err := client.Post("http://"+addr+"/orders", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("POST /orders: %s", resp.Status)
	}
	var out struct {
		OrderID string `json:"order_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.OrderID == "" {
		return "", fmt.Errorf("POST /orders: no order id in the answer: %v", err)
	}
	return out.OrderID, nil
}
