package api

import (
	"net/http"

	"github.com/keyward/keyward/internal/ra"
)

// StatusOf maps an RA error to its HTTP status: the one place error kinds become statuses, for the API and
// the console alike.
func StatusOf(err error) int {
	switch ra.KindOf(err) {
	case ra.KindBadRequest:
		return http.StatusBadRequest
	case ra.KindUnauthorized:
		return http.StatusUnauthorized
	case ra.KindForbidden:
		return http.StatusForbidden
	case ra.KindNotFound:
		return http.StatusNotFound
	case ra.KindConflict:
		return http.StatusConflict
	case ra.KindUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
