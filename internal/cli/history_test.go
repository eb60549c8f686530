package cli

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/api"
)

// TestDeviceHistoryAt walks one device through enrollment, a renewal with its key, a renewal with a new key
// (rekey), a revocation and its decommissioning, noting an instant after each step, then asks what it held at
// each instant: from the CLI (device history, cert history) and the API, which agree.
func TestDeviceHistoryAt(t *testing.T) {
	dir := initDir(t)
	common := []string{"--data", dir}
	st := filepath.Join(t.TempDir(), "st")
	mustKW(t, append([]string{"station", "add", "--site", "line-a", "--product", "demo-implant", "--out", st}, common...)...)
	srv := serveInProcess(t, common...)
	const serial = "DEMO-00000777"
	work := t.TempDir()
	client := []string{"--server", srv, "--product", "demo-implant", "--trust", filepath.Join(st, "trust.pem")}
	certOf := func(file string) string {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		return parsePEMCerts(t, string(data))[0].SerialNumber.Text(16)
	}
	var instants []time.Time
	mark := func() {
		time.Sleep(5 * time.Millisecond)
		instants = append(instants, time.Now())
		time.Sleep(5 * time.Millisecond)
	}

	mark() // 0: before anything
	key1, c1File := filepath.Join(work, "1.key"), filepath.Join(work, "1.pem")
	mustKW(t, append([]string{"device", "enroll", "--serial", serial, "--key-out", key1, "--out", c1File,
		"--station", filepath.Join(st, "station.pem"), "--station-key", filepath.Join(st, "station.key")}, client...)...)
	mark() // 1: enrolled
	c2File := filepath.Join(work, "2.pem")
	mustKW(t, append([]string{"device", "force-renew", serial}, common...)...)
	mustKW(t, append([]string{"device", "renew", "--cert", c1File, "--key", key1, "--out", c2File}, client...)...)
	mark() // 2: renewed with the same key
	key3, c3File := filepath.Join(work, "3.key"), filepath.Join(work, "3.pem")
	mustKW(t, append([]string{"device", "force-renew", serial}, common...)...)
	mustKW(t, append([]string{"device", "renew", "--cert", c2File, "--key", key1, "--rekey", "--key-out", key3, "--out", c3File}, client...)...)
	mark() // 3: re-keyed
	c1, c2, c3 := certOf(c1File), certOf(c2File), certOf(c3File)
	mustKW(t, append([]string{"cert", "revoke", c3, "--reason", "keyCompromise"}, common...)...)
	mark() // 4: its current certificate revoked
	mustKW(t, append([]string{"device", "decommission", serial, "--attested-by", "QA record 12"}, common...)...)
	mark() // 5: decommissioned

	historyAt := func(i int) api.History {
		var h api.History
		out := mustKW(t, append([]string{"device", "history", serial, "--at", instants[i].Format(time.RFC3339Nano), "--json"}, common...)...)
		if err := json.Unmarshal([]byte(out), &h); err != nil || h.At == nil {
			t.Fatalf("device history --at: %v\n%s", err, out)
		}
		return h
	}
	type certWant struct{ held, valid, revoked bool }
	want := []struct {
		state string
		certs map[string]certWant
		keys  []bool // held, in the order the device got its keys
	}{
		{"unknown", map[string]certWant{}, nil},
		{"active", map[string]certWant{c1: {true, true, false}}, []bool{true}},
		{"active", map[string]certWant{c1: {false, false, false}, c2: {true, true, false}}, []bool{true}},
		{"active", map[string]certWant{c1: {}, c2: {}, c3: {true, true, false}}, []bool{false, true}},
		{"active", map[string]certWant{c1: {}, c2: {}, c3: {true, false, true}}, []bool{false, true}},
		{"decommissioned", map[string]certWant{c1: {false, false, true}, c2: {false, false, true}, c3: {false, false, true}}, []bool{false, false}},
	}
	for i, w := range want {
		h := historyAt(i)
		at := h.At
		if at.State != w.state || len(at.Certificates) != len(w.certs) || len(at.Keys) != len(w.keys) {
			t.Fatalf("at instant %d: state %s, %d certificates, %d keys; want %s, %d, %d\n%+v", i, at.State, len(at.Certificates), len(at.Keys), w.state, len(w.certs), len(w.keys), at)
		}
		for _, c := range at.Certificates {
			cw, ok := w.certs[c.Serial]
			if !ok || c.Held != cw.held || c.Valid != cw.valid || c.Revoked != cw.revoked {
				t.Fatalf("at instant %d: certificate %s held %v valid %v revoked %v; want %+v (known: %v)", i, c.Serial, c.Held, c.Valid, c.Revoked, cw, ok)
			}
		}
		for j, k := range at.Keys {
			if k.Held != w.keys[j] {
				t.Fatalf("at instant %d: key %d (%s) held %v, want %v", i, j, k.URI, k.Held, w.keys[j])
			}
		}
	}

	// The whole record: every step an event, in order; certificates and keys with what ended each.
	h := historyAt(5)
	var actions []string
	for _, e := range h.Events {
		if e.Outcome == "success" {
			actions = append(actions, e.Action)
		}
	}
	for _, a := range []string{"est.enroll", "device.force-renew", "est.reenroll", "est.reenroll", "cert.revoke", "key.destroy", "device.decommission"} {
		i := indexOf(actions, a)
		if i < 0 {
			t.Fatalf("history lacks %s: %v", a, actions)
		}
		actions = actions[i+1:]
	}
	ended := map[string]string{}
	for _, c := range h.Certificates {
		ended[c.Serial] = c.EndedBy
		if c.IssuedEvent == 0 {
			t.Fatalf("certificate %s without the event that issued it", c.Serial)
		}
	}
	if ended[c1] != "superseded" || ended[c2] != "superseded" || ended[c3] != "decommissioned" || len(h.Keys) != 2 ||
		h.Keys[0].EndedBy != "rekeyed" || h.Keys[1].EndedBy != "destroyed" {
		t.Fatalf("certificates ended %v; keys %+v", ended, h.Keys)
	}
	if h.Certificates[2].RevocationReason != "keyCompromise" {
		t.Fatalf("third certificate: %+v", h.Certificates[2])
	}

	// cert history of the first certificate is the same device's record.
	var ch api.History
	if err := json.Unmarshal([]byte(mustKW(t, append([]string{"cert", "history", c1, "--json"}, common...)...)), &ch); err != nil || ch.Device.Serial != serial || len(ch.Events) != len(h.Events) {
		t.Fatalf("cert history %s: %v %+v", c1, err, ch.Device)
	}
	text := mustKW(t, append([]string{"cert", "history", c1}, common...)...)
	if !strings.Contains(text, "*"+c1) {
		t.Fatalf("cert history does not mark the certificate:\n%s", text)
	}

	// Every line of the history comes with its inclusion proof, which checks offline with the log's key alone.
	proofDir := filepath.Join(t.TempDir(), "proofs")
	var proved api.History
	if err := json.Unmarshal([]byte(mustKW(t, append([]string{"device", "history", serial, "--proofs", proofDir, "--json"}, common...)...)), &proved); err != nil {
		t.Fatal(err)
	}
	if len(proved.Proofs) != len(proved.Events) || len(proved.Events) == 0 {
		t.Fatalf("%d proofs for %d events", len(proved.Proofs), len(proved.Events))
	}
	keyFile := filepath.Join(t.TempDir(), "audit.pub")
	mustKW(t, append([]string{"audit", "pubkey", "--out", keyFile}, common...)...)
	for i, e := range proved.Events {
		if proved.Proofs[i].Event.Seq != e.Seq {
			t.Fatalf("proof %d is of event %d, the history lists %d", i, proved.Proofs[i].Event.Seq, e.Seq)
		}
		f := filepath.Join(proofDir, fmt.Sprintf("event-%d.json", e.Seq))
		mustKW(t, "audit", "check-proof", "--proof", f, "--key", keyFile)
	}
	last := filepath.Join(proofDir, fmt.Sprintf("event-%d.json", proved.Events[len(proved.Events)-1].Seq))
	data, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	forged := writeTemp(t, "forged.json", []byte(strings.Replace(string(data), `"subject": "`+serial, `"subject": "DEMO-00000778`, 1)))
	if _, errs, code := kw(t, "audit", "check-proof", "--proof", forged, "--key", keyFile); code != ExitAuditBroken {
		t.Fatalf("check-proof of an altered history event: exit %d %s", code, errs)
	}
	if _, errs, code := kw(t, append([]string{"device", "history", serial, "--checkpoint", keyFile}, common...)...); code != ExitUsage || !strings.Contains(errs, "--proofs") {
		t.Fatalf("--checkpoint without --proofs: exit %d %s", code, errs)
	}

	// The API answers the same record.
	token, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(path string) (int, []byte) {
		req, _ := http.NewRequest("GET", srv+path, nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	at3 := instants[3].Format(time.RFC3339Nano)
	status, body := get("/api/v1/devices/dev/demo-implant/" + serial + "/history?at=" + url.QueryEscape(at3))
	var viaAPI api.History
	if status != http.StatusOK || json.Unmarshal(body, &viaAPI) != nil {
		t.Fatalf("GET history: %d %s", status, body)
	}
	if cli := historyAt(3); !reflect.DeepEqual(viaAPI.At, cli.At) || len(viaAPI.Events) != len(cli.Events) {
		t.Fatalf("API and CLI disagree at instant 3:\nAPI %+v\nCLI %+v", viaAPI.At, cli.At)
	}
	if status, body := get("/api/v1/devices/dev/demo-implant/" + serial + "/history?proofs=true"); status != http.StatusOK {
		t.Fatalf("GET history with proofs: %d %s", status, body)
	} else {
		var withProofs api.History
		if err := json.Unmarshal(body, &withProofs); err != nil || len(withProofs.Proofs) != len(withProofs.Events) {
			t.Fatalf("GET history with proofs: %v, %d proofs for %d events", err, len(withProofs.Proofs), len(withProofs.Events))
		}
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/api/v1/devices/dev/demo-implant/DEMO-99999999/history", http.StatusNotFound},
		{"/api/v1/devices/dev/demo-implant/" + serial + "/history?at=yesterday", http.StatusBadRequest},
		{"/api/v1/devices/dev/demo-implant/" + serial + "/history?proofs=maybe", http.StatusBadRequest},
	} {
		if status, body := get(tc.path); status != tc.code {
			t.Fatalf("GET %s: %d %s; want %d", tc.path, status, body, tc.code)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"device", "history", "DEMO-99999999"}, ExitNotFound, "no device"},
		{[]string{"device", "history", serial, "--at", "last tuesday"}, ExitUsage, "RFC 3339"},
		{[]string{"cert", "history", "abcdef"}, ExitNotFound, "no certificate"},
	} {
		if _, errs, code := kw(t, append(tc.args, common...)...); code != tc.code || !strings.Contains(errs, tc.want) {
			t.Fatalf("%v: exit %d %s; want %d with %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
