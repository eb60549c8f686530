package sqlrecord

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

var placeholder = regexp.MustCompile(`\$([0-9]+)`)

// placeholders returns the highest placeholder number of q, and fails t unless q uses every number from 1 to it:
// PostgreSQL cannot type a parameter a statement never mentions.
func placeholders(t *testing.T, name, q string) int {
	t.Helper()
	seen := map[int]bool{}
	high := 0
	for _, m := range placeholder.FindAllStringSubmatch(q, -1) {
		n, _ := strconv.Atoi(m[1])
		seen[n] = true
		high = max(high, n)
	}
	for n := 1; n <= high; n++ {
		if !seen[n] {
			t.Errorf("%s: uses $%d but not $%d", name, high, n)
		}
	}
	if strings.Contains(q, "?") {
		t.Errorf("%s: has a ? placeholder; shared statements number theirs", name)
	}
	return high
}

// TestStatements checks every shared statement's placeholders, and that each INSERT binds one per column.
func TestStatements(t *testing.T) {
	inserts := []struct {
		name, q, columns string
	}{
		{"InsertCA", InsertCA, CAColumns},
		{"InsertCARequest", InsertCARequest, CARequestColumns},
		{"InsertKey", InsertKey, KeyColumns},
		{"InsertCertificate", InsertCertificate, CertificateColumns},
		{"InsertToken", InsertToken, TokenColumns},
		{"InsertEvent", InsertEvent, AuditColumns},
		{"InsertCheckpoint", InsertCheckpoint, CheckpointColumns},
		{"InsertStation", InsertStation, StationColumns},
		{"PutDevice", PutDevice, DeviceColumns},
		{"InsertCRL", InsertCRL, CRLColumns},
		{"InsertRevocationSigner", InsertRevocationSigner, RevocationSignerColumns},
		{"InsertFilter", InsertFilter, FilterColumns},
		{"InsertFirmwareRoot", InsertFirmwareRoot, FirmwareRootColumns},
		{"InsertFirmwareKey", InsertFirmwareKey, FirmwareKeyColumns},
		{"InsertFirmwareRelease", InsertFirmwareRelease, FirmwareReleaseColumns},
		{"InsertFirmwareApproval", InsertFirmwareApproval, FirmwareApprovalColumns},
		{"InsertFactorySite", InsertFactorySite, FactorySiteColumns},
		{"InsertFactoryExport", InsertFactoryExport, FactoryExportColumns},
		{"InsertCSRSignature", InsertCSRSignature, CSRSignatureColumns},
		{"InsertImportedCertificate", InsertImportedCertificate, ImportedCertificateColumns},
		{"PutFactoryBatch", PutFactoryBatch, FactoryBatchColumns},
		{"InsertSiteLog", InsertSiteLog, SiteLogColumns},
	}
	for _, tc := range inserts {
		if got, want := placeholders(t, tc.name, tc.q), len(columnNames(tc.columns)); got != want {
			t.Errorf("%s: %d placeholders for %d columns", tc.name, got, want)
		}
	}
	c := NewCodec(plain{})
	now := time.Now()
	for _, tc := range []struct {
		name string
		q    string
		args int // -1: not checked
	}{
		{"SelectCA", SelectCA, 1}, {"ListCAs", ListCAs, 0}, {"SetCAStatus", SetCAStatus, 2},
		{"RevokeCA", RevokeCA, 4}, {"ListCARequests", ListCARequests, 0}, {"CloseCARequest", CloseCARequest, 3}, {"DeleteCARequest", DeleteCARequest, 1},
		{"SelectKey", SelectKey, 1}, {"ListKeys", ListKeys, 0}, {"SetKeyState", SetKeyState, len(c.SetKeyStateArgs("u", "s", now))},
		{"SelectCertificate", SelectCertificate, 1}, {"CertificatesBySPKI", CertificatesBySPKI, 1},
		{"SelectTokenByHash", SelectTokenByHash, 1}, {"SelectTokenByName", SelectTokenByName, 1}, {"ListTokens", ListTokens, 0},
		{"RevokeToken", RevokeToken, 3}, {"SetTokenLastUsed", SetTokenLastUsed, 2}, {"WalkAudit", WalkAudit, 2}, {"AuditBySubject", AuditBySubject, 3}, {"AuditHead", AuditHead, 0}, {"WalkChanges", WalkChanges, 2},
		{"SelectStation", SelectStation, 1}, {"ListStations", ListStations, 0}, {"UpdateStation", UpdateStation, len(c.UpdateStationArgs(&store.Station{}))},
		{"SelectDevice", SelectDevice, 3}, {"SetCertificateStatus", SetCertificateStatus, 3},
		{"ExpiringCertificates", ExpiringCertificates, 2}, {"ExpiringCertificatesLimit", ExpiringCertificatesLimit, 3},
		{"CountExpiring", CountExpiring, 4},
		{"NextCounter", NextCounter, 1}, {"RevocationHead", RevocationHead, 0}, {"SelectRevocationEntry", SelectRevocationEntry, 1},
		{"Revoke", Revoke, len(c.RevokeArgs(&store.Revocation{}, 1))}, {"Unhold", Unhold, len(UnholdArgs("s", 1))},
		{"WalkRevocationChanges", WalkRevocationChanges, 3}, {"PruneCRLs", PruneCRLs, 3}, {"LatestCRL", LatestCRL, 2},
		{"PruneCRLChunks", PruneCRLChunks, 3}, {"InsertCRLChunk", InsertCRLChunk, 5}, {"CRLChunkTotals", CRLChunkTotals, 3}, {"SelectCRLChunk", SelectCRLChunk, 4},
		{"LatestRevocationSigner", LatestRevocationSigner, 2}, {"SelectFilter", SelectFilter, 3}, {"LatestFilter", LatestFilter, 1},
		{"FirmwareRoots", FirmwareRoots, 1}, {"LatestFirmwareRoot", LatestFirmwareRoot, 1},
		{"SetFirmwareKeyStatus", SetFirmwareKeyStatus, len(c.SetFirmwareKeyStatusArgs(nil, "", now))}, {"FirmwareKeys", FirmwareKeys, 1},
		{"NextFirmwareSequence", NextFirmwareSequence, 2}, {"SelectFirmwareRelease", SelectFirmwareRelease, 1},
		{"UpdateFirmwareRelease", UpdateFirmwareRelease, len(c.UpdateFirmwareReleaseArgs(&store.FirmwareRelease{}))},
		{"ListFirmwareReleases", ListFirmwareReleases, 2}, {"FirmwareApprovals", FirmwareApprovals, 1},
		{"SelectFactorySite", SelectFactorySite, 1}, {"SetFactorySiteReserved", SetFactorySiteReserved, 2},
		{"LastFactoryExportSeq", LastFactoryExportSeq, 1}, {"SelectFactoryBatch", SelectFactoryBatch, 1},
		{"FactoryBatchCounts", FactoryBatchCounts, 2}, {"SiteLogLength", SiteLogLength, 1}, {"WalkSiteLog", WalkSiteLog, 3},
		{"WalkCertificates", WalkCertificates, 2}, {"WalkImportedCertificates", WalkImportedCertificates, 3},
		{"ImportedBySPKI", ImportedBySPKI, 1}, {"SharedKeys", SharedKeys, 0}, {"CSRNonceCollisions", CSRNonceCollisions, 0},
		{"CSRSignatureArgs", InsertCSRSignature, len(c.CSRSignatureArgs("s", &store.CSRSignature{}))},
		{"ImportedCertificateArgs", InsertImportedCertificate, len(c.ImportedCertificateArgs(&store.ImportedCertificate{}))},
	} {
		if got := placeholders(t, tc.name, tc.q); got != tc.args {
			t.Errorf("%s: %d placeholders, want %d", tc.name, got, tc.args)
		}
	}
}

// TestCSRNonceCollisionsColumns: the join reads the certificate's columns in ScanCertificate's order.
func TestCSRNonceCollisionsColumns(t *testing.T) {
	want := "SELECT c." + strings.ReplaceAll(CertificateColumns, ", ", ", c.") + ", s.algorithm"
	if got := strings.Join(strings.Fields(CSRNonceCollisions), " "); !strings.HasPrefix(got, want) {
		t.Errorf("CSRNonceCollisions starts %q, want %q", got[:min(len(got), len(want))], want)
	}
}

func TestFilterQueries(t *testing.T) {
	c := NewCodec(plain{})
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		build    func() (string, []any)
		want     string // the query after its table name
		wantArgs []any
	}{
		{
			name:  "certificates, no filter",
			build: func() (string, []any) { return ListCertificates(store.CertFilter{}) },
			want:  "ORDER BY serial",
		},
		{
			name: "certificates, issuer, subject and limit",
			build: func() (string, []any) {
				return ListCertificates(store.CertFilter{IssuerID: "dev/ca", Subject: "PX1-1", Limit: 5})
			},
			want:     "WHERE issuer_id = $1 AND subject = $2 ORDER BY serial LIMIT $3",
			wantArgs: []any{"dev/ca", "PX1-1", 5},
		},
		{
			name:     "devices, site",
			build:    func() (string, []any) { return ListDevices(store.DeviceFilter{Site: "a"}) },
			want:     "WHERE site = $1 ORDER BY environment, product_line, serial",
			wantArgs: []any{"a"},
		},
		{
			name: "certificate status walk",
			build: func() (string, []any) {
				return c.WalkCertStatus(store.CertQuery{IssuerIDs: []string{"a", "b"}, Status: "valid", IssuedFrom: from})
			},
			want:     "WHERE issuer_id IN ($1, $2) AND status = $3 AND created_at >= $4 AND serial > $5 ORDER BY serial LIMIT $6",
			wantArgs: []any{"a", "b", "valid", from},
		},
		{
			name:  "certificate status walk, no filter",
			build: func() (string, []any) { return c.WalkCertStatus(store.CertQuery{}) },
			want:  "WHERE serial > $1 ORDER BY serial LIMIT $2",
		},
		{
			name: "certificate count",
			build: func() (string, []any) {
				return c.CountCertificates(store.CertQuery{Profile: "p", NotAfterFrom: from, IssuedTo: from})
			},
			want:     "WHERE profile = $1 AND created_at < $2 AND not_after >= $3",
			wantArgs: []any{"p", from, from},
		},
	} {
		q, args := tc.build()
		_, rest, ok := strings.Cut(q, " FROM ")
		if !ok {
			t.Fatalf("%s: no FROM in %q", tc.name, q)
		}
		_, rest, _ = strings.Cut(rest, " ") // the table
		if rest != tc.want {
			t.Errorf("%s:\n got  %q\n want %q", tc.name, rest, tc.want)
		}
		if !reflect.DeepEqual(args, tc.wantArgs) {
			t.Errorf("%s: args %v, want %v", tc.name, args, tc.wantArgs)
		}
	}
}
