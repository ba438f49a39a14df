package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"

	"golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	colEventkit = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	colStock    = color.RGBA{0xff, 0x7f, 0x0e, 0xff}
	colText     = color.RGBA{0x22, 0x22, 0x22, 0xff}
	colGrid     = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

// bar is one row of a chart: eventkit's value and the comparison's.
type bar struct {
	label                     string
	eventkit, stock           float64
	eventkitLabel, stockLabel string
	unit                      string
}

// plot draws the medians as a PNG: a panel of throughput (events/s) and a
// panel of p99 latency (ms), eventkit against stock, each bar labelled with
// its value.
func plot(path string, rs []result) error {
	var thr, lat []bar
	for _, r := range rs {
		b := bar{label: r.Label, eventkit: r.Eventkit, eventkitLabel: r.EventkitLabel, stock: r.Stock, stockLabel: r.StockLabel, unit: r.Unit}
		if b.eventkitLabel == "" {
			b.eventkitLabel = "eventkit"
		}
		if b.stockLabel == "" {
			b.stockLabel = "stock"
		}
		switch {
		case r.Unit == "events/s" && r.Group != "backlog":
			thr = append(thr, b)
		case r.Unit == "ms" && r.Group == "latency":
			lat = append(lat, b)
		}
	}
	if len(thr)+len(lat) == 0 {
		return fmt.Errorf("no throughput or latency results to plot")
	}
	const width, rowH, headH, gap = 1400, 64, 70, 30
	height := 90 + headH + len(thr)*rowH + gap + headH + len(lat)*rowH + 40
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)

	y := 20
	text(img, 20, y, "eventkit vs stock Watermill: medians of one run (cmd/eventkit-bench)", colText, 2)
	y += 36
	rect(img, 20, y, 40, y+16, colEventkit)
	text(img, 46, y, "eventkit", colText, 1)
	rect(img, 140, y, 160, y+16, colStock)
	text(img, 166, y, "stock Watermill (or the comparison the bar names)", colText, 1)
	y += 34
	if len(thr) > 0 {
		y = panel(img, y, "throughput, events/s (longer is better)", thr, rowH)
		y += gap
	}
	if len(lat) > 0 {
		panel(img, y, "commit -> consumer latency, ms (shorter is better)", lat, rowH)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// panel draws a titled group of bar pairs from y and returns the y below it.
func panel(img *image.RGBA, y int, title string, bars []bar, rowH int) int {
	const labelW, left, right = 470, 20, 1180
	text(img, left, y, title, colText, 2)
	y += 40
	top := y
	maxV := 0.0
	for _, b := range bars {
		maxV = max(maxV, b.eventkit, b.stock)
	}
	if maxV == 0 {
		maxV = 1
	}
	x0 := left + labelW
	scale := float64(right-x0) / maxV
	for i := 0; i <= 4; i++ {
		x := x0 + (right-x0)*i/4
		rect(img, x, top-4, x+1, top+len(bars)*rowH, colGrid)
	}
	for _, b := range bars {
		label := b.label
		if len(label) > 66 {
			label = label[:66]
		}
		text(img, left, y+18, ascii(label), colText, 1)
		w := int(b.eventkit * scale)
		rect(img, x0, y+2, x0+max(w, 1), y+26, colEventkit)
		text(img, x0+max(w, 1)+6, y+8, b.eventkitLabel+" "+value(b.eventkit, b.unit), colText, 1)
		if b.stock > 0 {
			w := int(b.stock * scale)
			rect(img, x0, y+30, x0+max(w, 1), y+54, colStock)
			text(img, x0+max(w, 1)+6, y+36, b.stockLabel+" "+value(b.stock, b.unit), colText, 1)
		}
		y += rowH
	}
	return y
}

func rect(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1), &image.Uniform{c}, image.Point{}, draw.Src)
}

// text draws s with its top-left corner at (x, y), in basicfont's 7x13
// face scaled by an integer factor.
func text(dst *image.RGBA, x, y int, s string, c color.Color, scale int) {
	face := basicfont.Face7x13
	w := font.MeasureString(face, s).Ceil()
	small := image.NewRGBA(image.Rect(0, 0, w, 13))
	d := font.Drawer{Dst: small, Src: &image.Uniform{c}, Face: face, Dot: fixed.P(0, 11)}
	d.DrawString(s)
	r := image.Rect(x, y, x+w*scale, y+13*scale)
	draw.NearestNeighbor.Scale(dst, r, small, small.Bounds(), draw.Over, nil)
}

// ascii replaces what basicfont cannot draw.
func ascii(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		switch {
		case r == '→':
			out = append(out, '-', '>')
		case r < 128:
			out = append(out, r)
		default:
			out = append(out, '?')
		}
	}
	return string(out)
}
