package scale

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// series is one line of a chart.
type series struct {
	proxy  string
	name   string
	dashed bool
	pts    plotter.XYs
}

// chart is one PNG.
type chart struct {
	file, title, ylabel string
	logY                bool
	series              []series
}

// writePlots draws cold time, one-change latency, RSS and first-packet latency against
// the number of Services, every proxy on one chart, and returns the files written.
func writePlots(res *Results, dir string) ([]string, error) {
	var sizes []float64
	for _, sr := range res.Sizes {
		sizes = append(sizes, float64(sr.Services))
	}
	collect := func(proxy, name string, dashed bool, get func(r ProxyRun) (float64, bool)) series {
		s := series{proxy: proxy, name: name, dashed: dashed}
		for _, sr := range res.Sizes {
			for _, r := range sr.Runs {
				if r.Proxy != proxy {
					continue
				}
				if v, ok := get(r); ok && v > 0 {
					s.pts = append(s.pts, plotter.XY{X: float64(sr.Services), Y: v})
				}
			}
		}
		return s
	}
	var charts []chart
	cold := chart{file: "cold.png", title: "Cold program time (process start → sentinel answers)", ylabel: "seconds", logY: true}
	change := chart{file: "one-change.png", title: "One-change latency p50 (update → traffic on new endpoint)", ylabel: "milliseconds", logY: true}
	rss := chart{file: "rss.png", title: "Peak RSS (VmHWM)", ylabel: "MiB"}
	fp := chart{file: "first-packet.png", title: "First-packet latency p50 (TCP connect)", ylabel: "milliseconds"}
	for _, p := range res.Proxies {
		n := p.Name
		cold.series = append(cold.series, collect(n, n+missingNote(res, n), false, coldOf))
		change.series = append(change.series,
			collect(n, n, false, func(r ProxyRun) (float64, bool) { v, ok := change0Of(r); return v * 1e3, ok }),
			collect(n, n+" (min-sync 1s)", true, func(r ProxyRun) (float64, bool) { v, ok := change1sOf(r); return v * 1e3, ok }))
		rss.series = append(rss.series, collect(n, n, false, func(r ProxyRun) (float64, bool) { v, ok := peakRSSOf(r); return v / (1 << 20), ok }))
		fp.series = append(fp.series,
			collect(n, n+" ClusterIP", false, func(r ProxyRun) (float64, bool) { v, ok := fpClusterOf(r); return v * 1e3, ok }),
			collect(n, n+" NodePort", true, func(r ProxyRun) (float64, bool) { v, ok := fpNodeOf(r); return v * 1e3, ok }))
	}
	charts = append(charts, cold, change, rss, fp)
	var files []string
	for _, c := range charts {
		if err := c.draw(sizes, filepath.Join(dir, c.file)); err != nil {
			return files, fmt.Errorf("plot %s: %w", c.file, err)
		}
		files = append(files, c.file)
	}
	return files, nil
}

// missingNote tells, for a legend, at which sizes a proxy has no numbers and why.
func missingNote(res *Results, proxy string) string {
	var parts []string
	for _, sr := range res.Sizes {
		for _, r := range sr.Runs {
			if r.Proxy == proxy && r.Status != StatusOK {
				parts = append(parts, fmt.Sprintf("%s at %d", r.Status, sr.Services))
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
}

func (c chart) draw(sizes []float64, path string) error {
	p := plot.New()
	p.Title.Text = c.title
	p.X.Label.Text = "Services"
	p.Y.Label.Text = c.ylabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	// Sizes span decades: log X with a tick at every measured size.
	p.X.Scale = plot.LogScale{}
	var ticks plot.ConstantTicks
	for _, s := range sizes {
		ticks = append(ticks, plot.Tick{Value: s, Label: strconv.FormatFloat(s, 'f', -1, 64)})
	}
	p.X.Tick.Marker = ticks
	if len(sizes) > 0 {
		p.X.Min, p.X.Max = sizes[0]/1.5, sizes[len(sizes)-1]*1.5
	}
	ymin, ymax := math.Inf(1), math.Inf(-1)
	colorOf := map[string]color.Color{}
	for _, s := range c.series {
		if len(s.pts) == 0 {
			continue
		}
		col, ok := colorOf[s.proxy]
		if !ok {
			col = palette[len(colorOf)%len(palette)]
			colorOf[s.proxy] = col
		}
		l, pts, err := plotter.NewLinePoints(s.pts)
		if err != nil {
			return err
		}
		l.Color, pts.Color = col, col
		l.Width = vg.Points(1.5)
		pts.Shape = draw.CircleGlyph{}
		if s.dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			pts.Shape = draw.TriangleGlyph{}
		}
		p.Add(l, pts)
		p.Legend.Add(s.name, l, pts)
		for _, xy := range s.pts {
			ymin, ymax = math.Min(ymin, xy.Y), math.Max(ymax, xy.Y)
		}
	}
	if math.IsInf(ymin, 1) {
		ymin, ymax = 1, 10
	}
	if c.logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Min = math.Pow(10, math.Floor(math.Log10(ymin)))
		p.Y.Max = math.Pow(10, math.Ceil(math.Log10(ymax)+0.3))
		p.Y.Tick.Marker = logTicks(p.Y.Min, p.Y.Max)
	} else {
		p.Y.Min, p.Y.Max = 0, ymax*1.3
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// logTicks labels 1, 2 and 5 times each power of ten in [lo, hi], with unlabelled minor
// ticks between; gonum's LogTicks labels powers of ten only.
func logTicks(lo, hi float64) plot.ConstantTicks {
	var ticks plot.ConstantTicks
	for dec := math.Floor(math.Log10(lo)); dec <= math.Ceil(math.Log10(hi)); dec++ {
		base := math.Pow(10, dec)
		for m := 1; m < 10; m++ {
			v := float64(m) * base
			if v < lo*0.999 || v > hi*1.001 {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
