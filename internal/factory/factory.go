package factory

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/ra"
)

// Errors a caller must tell apart (errors.Is); the faces map their kinds (ra.KindOf). The decisions' errors are
// the RA's own sentinels, so that one test holds whichever package refused.
var (
	// ErrBadRequest: the input breaks a rule (unknown environment or product, bad site name, quota, window).
	ErrBadRequest = ra.ErrFactoryBadRequest
	// ErrConflict: the request conflicts with existing state (site CA exists, batch file for another job,
	// device serial injected already, credentials exhausted).
	ErrConflict = ra.ErrFactoryConflict
	// ErrNotFound: no such site CA.
	ErrNotFound = ra.ErrFactoryNotFound
	// ErrRefused: the site CA may not issue this (quota spent, issuing window over, subject outside its rule).
	ErrRefused = ra.ErrSiteRefused
	// ErrTampered: an export fails verification (altered, reordered, removed or appended record, truncated file,
	// signature that does not verify).
	ErrTampered = ra.ErrExportTampered
	// ErrForeign: an export belongs to another site, environment or data directory.
	ErrForeign = ra.ErrExportForeign
	// ErrReplay: the export (its batch and sequence number) was reconciled already, or its batch is closed.
	ErrReplay = ra.ErrExportReplay
	// ErrCorrupt: the batch file is damaged (not a torn tail that a resume may cut off).
	ErrCorrupt = ra.Sentinel(ra.KindBadRequest, "batch file corrupt")
	// ErrStopped is returned when BatchRequest.StopAfter ended a run early; the batch file is resumable.
	ErrStopped = ra.Sentinel(ra.KindInternal, "batch stopped early")
)

// DefaultProfile is the profile a site CA issues when none is named.
const DefaultProfile = ra.DefaultSiteProfile

// Factory runs credential batches and exports at a site, and reconciles exports at headquarters, on one data
// directory: its RA decides and records, its custodian signs the exports.
type Factory struct {
	RA *ra.RA
	CA *ca.Custodian
	// Principal is who runs the commands, as the RA authorises and records them.
	Principal ra.Principal
}

func (f *Factory) now() time.Time { return f.RA.Now() }

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// notFound gives a missing file (a batch, an export, the directory of an output) the kind the faces report as
// "not found", unless a decision gave the error a kind already.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return ra.Wrap(ra.KindNotFound, err)
	}
	return err
}
