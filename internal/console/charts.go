package console

// The dashboard's charts: issuance and enrollment rates from the audit trail, certificates expiring per month
// from the certificate table, drawn as SVG on the server (no script, no image fetched).

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// rateWindow is how far back the rate charts look.
const rateWindow = 30 * 24 * time.Hour

// expiryTTL is how long the expiry counts are reused before they are counted again.
const expiryTTL = time.Minute

// Series of the rate charts, by audit action.
const (
	seriesIssued   = iota // cert.issue: API and CLI issuance from a CSR
	seriesEnrolled        // est.enroll: a station enrolled a device
	seriesRenewed         // est.reenroll: a device renewed
	nSeries
)

var seriesNames = [nSeries]string{"issued (API, CLI)", "enrolled (EST)", "renewed (EST)"}

// palette holds the series' colours (presentation attributes: the CSP allows no inline style).
var palette = [nSeries]string{"#2b6cb0", "#2f855a", "#b7791f"}

// chartCache keeps hourly counts of issuances and enrollments, read from the audit trail incrementally (only
// events newer than the last read), and the latest expiry counts.
type chartCache struct {
	read store.Reader

	mu     sync.Mutex
	after  int64                     // the last audit event counted
	hours  map[int64]*[nSeries]int64 // unix hour → counts
	primed bool

	expMu   sync.Mutex
	expAt   time.Time
	expHTML template.HTML
}

func newChartCache(read store.Reader) *chartCache {
	return &chartCache{read: read, hours: map[int64]*[nSeries]int64{}}
}

// rateTotals are the last 24 hours' counts.
type rateTotals struct {
	Issued, Enrolled, Renewed int64
}

// rateSnapshot is a copy of the hourly counts of the window ending now.
type rateSnapshot struct {
	now    time.Time
	hours  map[int64][nSeries]int64
	totals rateTotals
}

var errStop = errors.New("stop")

// rates brings the counts up to the audit head and returns a snapshot. The first call starts at the first event
// of the window, found by binary search on the sequence (events are appended in time order), so it reads the
// window's events only; later calls read the events appended since.
func (cc *chartCache) rates(ctx context.Context, now time.Time) (*rateSnapshot, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cutoff := now.Add(-rateWindow)
	if !cc.primed {
		start, err := cc.firstSince(ctx, cutoff)
		if err != nil {
			return nil, err
		}
		cc.after, cc.primed = start-1, true
	}
	err := cc.read.WalkAudit(ctx, cc.after, func(e *audit.Event) error {
		cc.after = e.Seq
		if e.Outcome != audit.OutcomeSuccess || e.Time.Before(cutoff) {
			return nil
		}
		i := -1
		switch e.Action {
		case audit.ActionCertIssue:
			i = seriesIssued
		case audit.ActionESTEnroll:
			i = seriesEnrolled
		case audit.ActionESTReenroll:
			i = seriesRenewed
		}
		if i < 0 {
			return nil
		}
		h := e.Time.Unix() / 3600
		b := cc.hours[h]
		if b == nil {
			b = new([nSeries]int64)
			cc.hours[h] = b
		}
		b[i]++
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the audit trail for the rate charts: %w", err)
	}
	snap := &rateSnapshot{now: now, hours: make(map[int64][nSeries]int64, len(cc.hours))}
	first, day := cutoff.Unix()/3600, now.Add(-24*time.Hour).Unix()/3600
	for h, b := range cc.hours {
		if h < first {
			delete(cc.hours, h)
			continue
		}
		snap.hours[h] = *b
		if h > day {
			snap.totals.Issued += b[seriesIssued]
			snap.totals.Enrolled += b[seriesEnrolled]
			snap.totals.Renewed += b[seriesRenewed]
		}
	}
	return snap, nil
}

// firstSince returns the sequence number of the first audit event at or after t (head+1 if none).
func (cc *chartCache) firstSince(ctx context.Context, t time.Time) (int64, error) {
	head, _, err := cc.read.AuditHead(ctx)
	if err != nil {
		return 0, err
	}
	timeOf := func(seq int64) (time.Time, error) {
		var at time.Time
		err := cc.read.WalkAudit(ctx, seq-1, func(e *audit.Event) error { at = e.Time; return errStop })
		if err != nil && !errors.Is(err, errStop) {
			return at, err
		}
		return at, nil
	}
	lo, hi := int64(1), head+1 // the answer is in [lo, hi]
	for lo < hi {
		mid := lo + (hi-lo)/2
		at, err := timeOf(mid)
		if err != nil {
			return 0, err
		}
		if at.Before(t) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// hourlyChart draws the last 48 hours, one group of bars per hour.
func (s *rateSnapshot) hourlyChart() template.HTML {
	const n = 48
	end := s.now.Unix() / 3600
	labels := make([]string, n)
	values := make([][nSeries]int64, n)
	for i := range n {
		h := end - int64(n-1-i)
		values[i] = s.hours[h]
		labels[i] = time.Unix(h*3600, 0).UTC().Format("15h")
	}
	return barChart("Issuance and enrollment per hour, last 48 hours (UTC)", labels, values, 6)
}

// dailyChart draws the last 30 days, one group of bars per day.
func (s *rateSnapshot) dailyChart() template.HTML {
	const n = 30
	today := s.now.UTC().Truncate(24 * time.Hour)
	labels := make([]string, n)
	values := make([][nSeries]int64, n)
	for i := range n {
		day := today.AddDate(0, 0, -(n - 1 - i))
		labels[i] = day.Format("01-02")
		for h := day.Unix() / 3600; h < day.Unix()/3600+24; h++ {
			b := s.hours[h]
			for k := range nSeries {
				values[i][k] += b[k]
			}
		}
	}
	return barChart("Issuance and enrollment per day, last 30 days (UTC)", labels, values, 5)
}

// expiring draws the valid certificates expiring in each of the next 12 months (the first from now to the end
// of this month) and later, counted in the store: expiring in [a, b) is the count not expired at a less the
// count not expired at b.
func (cc *chartCache) expiring(ctx context.Context, now time.Time) (template.HTML, error) {
	cc.expMu.Lock()
	defer cc.expMu.Unlock()
	if cc.expHTML != "" && now.Sub(cc.expAt) < expiryTTL && !now.Before(cc.expAt) {
		return cc.expHTML, nil
	}
	count := func(from time.Time) (int64, error) {
		return cc.read.CountCertificates(ctx, store.CertQuery{Status: store.CertStatusValid, NotAfterFrom: from})
	}
	const months = 12
	m0 := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	bounds := []time.Time{now}
	for i := 1; i <= months; i++ {
		bounds = append(bounds, m0.AddDate(0, i, 0))
	}
	counts := make([]int64, len(bounds))
	for i, b := range bounds {
		n, err := count(b)
		if err != nil {
			return "", fmt.Errorf("count certificates by expiry: %w", err)
		}
		counts[i] = n
	}
	labels := make([]string, 0, months+1)
	values := make([][nSeries]int64, 0, months+1)
	for i := range months {
		labels = append(labels, m0.AddDate(0, i, 0).Format("2006-01"))
		values = append(values, [nSeries]int64{max(counts[i]-counts[i+1], 0)})
	}
	labels = append(labels, "later")
	values = append(values, [nSeries]int64{counts[months]})
	cc.expHTML, cc.expAt = singleChart("Valid certificates expiring per month", labels, values), now
	return cc.expHTML, nil
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH                       = 760, 250
	padLeft, padRight, padTop, padBottom = 52, 12, 34, 48
)

// barChart draws groups of bars, one bar per series, with a legend and a y axis from 0 to a round maximum.
func barChart(title string, labels []string, values [][nSeries]int64, labelEvery int) template.HTML {
	return chart(title, labels, values, nSeries, seriesNames[:], labelEvery)
}

// singleChart draws one series.
func singleChart(title string, labels []string, values [][nSeries]int64) template.HTML {
	return chart(title, labels, values, 1, nil, 1)
}

func chart(title string, labels []string, values [][nSeries]int64, series int, names []string, labelEvery int) template.HTML {
	var top int64
	for _, v := range values {
		for k := range series {
			top = max(top, v[k])
		}
	}
	ymax := niceCeil(top)
	plotW, plotH := float64(chartW-padLeft-padRight), float64(chartH-padTop-padBottom)
	esc := template.HTMLEscapeString
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s">`, chartW, chartH, esc(title))
	fmt.Fprintf(&b, `<title>%s</title>`, esc(title))
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13" font-weight="bold" fill="#1a202c">%s</text>`, padLeft, esc(title))
	// Grid and y axis labels at 0, 1/4 … 1 of the maximum.
	for i := 0; i <= 4; i++ {
		y := float64(padTop) + plotH - plotH*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e2e8f0" stroke-width="1"/>`, padLeft, y, chartW-padRight, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" text-anchor="end" fill="#4a5568">%d</text>`, padLeft-6, y+3, ymax*int64(i)/4)
	}
	groupW := plotW / float64(max(len(labels), 1))
	barW := groupW * 0.8 / float64(series)
	for i, v := range values {
		x0 := float64(padLeft) + groupW*float64(i) + groupW*0.1
		for k := range series {
			if v[k] == 0 {
				continue // no bar, and no tooltip to hover
			}
			h := 0.0
			if ymax > 0 {
				h = plotH * float64(v[k]) / float64(ymax)
			}
			name := ""
			if names != nil {
				name = names[k] + ": "
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s%d</title></rect>`,
				x0+barW*float64(k), float64(padTop)+plotH-h, math.Max(barW-0.5, 0.5), h, palette[k], esc(labels[i]), esc(name), v[k])
		}
		if labelEvery > 0 && (i%labelEvery == 0 || i == len(values)-1 && labelEvery == 1) {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#4a5568">%s</text>`,
				float64(padLeft)+groupW*(float64(i)+0.5), chartH-padBottom+14, esc(labels[i]))
		}
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#718096" stroke-width="1"/>`, padLeft, chartH-padBottom, chartW-padRight, chartH-padBottom)
	if names != nil {
		x := float64(chartW - padRight - 150*series)
		for k := range series {
			fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="10" height="10" fill="%s"/><text x="%.0f" y="%d" font-size="11" fill="#1a202c">%s</text>`,
				x+150*float64(k), chartH-17, palette[k], x+150*float64(k)+14, chartH-8, esc(names[k]))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text above is escaped; the rest is numbers and constants
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten, at least 4 so that the quarter grid lines are whole.
func niceCeil(n int64) int64 {
	if n <= 4 {
		return 4
	}
	p := int64(1)
	for p*10 < n {
		p *= 10
	}
	for _, m := range []int64{1, 2, 4, 5, 8, 10} {
		if m*p >= n {
			return m * p
		}
	}
	return 10 * p
}
