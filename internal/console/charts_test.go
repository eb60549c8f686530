package console

import (
	"fmt"
	"strings"
	"testing"
)

func TestNiceCeil(t *testing.T) {
	for _, tc := range []struct{ in, want int64 }{{0, 4}, {3, 4}, {5, 5}, {7, 8}, {9, 10}, {11, 20}, {101, 200}, {399, 400}, {4001, 5000}} {
		if got := niceCeil(tc.in); got != tc.want {
			t.Errorf("niceCeil(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// TestChartEscapesAndScales: labels and titles are escaped (they are the only text from outside the console's
// code), the tallest bar fills the plot, and a zero draws no bar.
func TestChartEscapesAndScales(t *testing.T) {
	svg := string(barChart(`<script>alert(1)</script>`, []string{`a"b`, "c"}, [][nSeries]int64{{8, 0, 2}, {}}, 1))
	if strings.Contains(svg, "<script>") || !strings.Contains(svg, "&lt;script&gt;") || strings.Contains(svg, `a"b`) {
		t.Fatalf("not escaped:\n%s", svg)
	}
	plotH := float64(chartH - padTop - padBottom)
	if !strings.Contains(svg, fmt.Sprintf(`height="%.1f" fill="#2b6cb0"><title>a&#34;b issued`, plotH)) {
		t.Fatalf("the tallest bar (8 of 8) does not fill the plot height %.1f:\n%s", plotH, svg)
	}
	if strings.Count(svg, "<rect") != 1+2+nSeries { // background, the two bars that are not zero, legend
		t.Fatalf("%d rects", strings.Count(svg, "<rect"))
	}
	if strings.Contains(svg, "style=") {
		t.Fatal("inline style, which the console's CSP refuses")
	}
}
