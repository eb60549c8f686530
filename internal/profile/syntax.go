package profile

import (
	"fmt"
	"regexp/syntax"
	"strconv"
	"strings"
	"time"
)

// anchored reports whether every match of pattern must start at the beginning of the text and end at its end.
// It inspects the parse tree rather than the first and last characters, so "^a|b$" (anchored on one side in
// each branch) is refused and "^(a|b)$" is accepted. "^" and "$" under the m flag match at line breaks, so
// they do not count.
func anchored(pattern string) bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return false
	}
	return anchoredAt(re, true) && anchoredAt(re, false)
}

func anchoredAt(re *syntax.Regexp, start bool) bool {
	switch re.Op {
	case syntax.OpBeginText:
		return start
	case syntax.OpEndText:
		return !start
	case syntax.OpCapture:
		return anchoredAt(re.Sub[0], start)
	case syntax.OpConcat:
		if len(re.Sub) == 0 {
			return false
		}
		if start {
			return anchoredAt(re.Sub[0], start)
		}
		return anchoredAt(re.Sub[len(re.Sub)-1], start)
	case syntax.OpAlternate:
		for _, s := range re.Sub {
			if !anchoredAt(s, start) {
				return false
			}
		}
		return len(re.Sub) > 0
	}
	return false
}

// parseDuration accepts Go durations ("720h", "90m") and whole days or years ("90d", "15y"). A year is 365
// days and a day is 24 hours: certificate lifetimes are counted in seconds, not calendar dates.
func parseDuration(s string) (time.Duration, error) {
	const maxDays = 100 * 365 // far beyond any certificate; keeps the arithmetic clear of overflow
	bad := fmt.Errorf("%q is not a duration (use 720h, 90d or 15y)", clip(s))
	if n, unit := s[:max(len(s)-1, 0)], s[max(len(s)-1, 0):]; unit == "d" || unit == "y" {
		if n == "" || strings.TrimLeft(n, "0123456789") != "" {
			return 0, bad
		}
		v, err := strconv.Atoi(n)
		if err != nil {
			return 0, bad
		}
		days := v
		if unit == "y" {
			if v > maxDays/365 {
				return 0, fmt.Errorf("%q is more than 100 years", clip(s))
			}
			days = v * 365
		}
		if days > maxDays {
			return 0, fmt.Errorf("%q is more than 100 years", clip(s))
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, bad
	}
	if d > maxDays*24*time.Hour {
		return 0, fmt.Errorf("%q is more than 100 years", clip(s))
	}
	return d, nil
}

// formatDuration writes d in the profile's own units where it divides evenly.
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d > 0 && d%(365*day) == 0:
		return fmt.Sprintf("%dy", d/(365*day))
	case d > 0 && d%day == 0:
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
