package evidence

import (
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/hierarchy"
	"github.com/keyward/keyward/pkg/certpolicy"
)

func itoa(n int) string { return strconv.Itoa(n) }

func joinOr(s []string, none string) string {
	if len(s) == 0 {
		return none
	}
	return strings.Join(s, ", ")
}

func roleOf(s string) certpolicy.Role { return certpolicy.Role(s) }

func timeDuration(d hierarchy.Duration) time.Duration { return time.Duration(d) }
