package server

import (
	"net/http"

	"github.com/keyward/keyward/internal/console"
)

// mountConsole serves the web console at /console/ on the operator listener. The console authenticates with
// the same operator tokens through the RA, and its refusals go through this server's rate limit and access
// log like the API's.
func (s *Server) mountConsole() {
	c, err := console.New(console.Deps{
		RA:            s.ra,
		Logger:        s.log,
		Limited:       func(w http.ResponseWriter, r *http.Request) bool { return s.limited(w, r, false) },
		Refused:       func(r *http.Request, err error) { noteReason(r, err); s.limit.get().charge(sourceOf(r)) },
		Authenticated: notePrincipal,
	})
	if err != nil { // the embedded templates do not parse: a defect of the build, which the console's tests catch
		s.log.Error("web console disabled", "err", err)
		return
	}
	s.mux.Handle(console.Prefix+"/", c.Handler())
}
