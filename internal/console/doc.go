// Package console is Keyward's web console, served at /console/ on the operator listener by 'keyward serve': an
// operator signs in with their operator token and then works through server-rendered HTML pages (html/template),
// with server-rendered SVG charts and one small embedded script; every asset is embedded (go:embed), nothing is
// fetched from elsewhere.
//
// Authentication and authorisation are the API's: the token is checked by ra.Authenticate, each route carries
// the roles of the API route it mirrors, and every change is an RA call with the session's principal, so roles
// are enforced and changes audited exactly as over the API. A session is a random 256-bit id (crypto/rand) in an
// HttpOnly, Secure, SameSite=Strict cookie; the server keeps sessions in memory (this node only: behind a load
// balancer, pin an operator to one node), ends them after an idle time and a maximum lifetime, and ends them at
// once when their token is revoked or expires. Every POST carries the session's CSRF token, compared in
// constant time. Responses carry a strict Content-Security-Policy (scripts and styles from the console only).
//
// It may import internal/ra (the decider, roles, errors), internal/store (records and the read-only Reader),
// and internal/audit (action names). It must never open a store transaction,
// sign, or log or render a token.
package console
