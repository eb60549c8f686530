package sqlschema

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, tc := range []struct {
		name    string
		files   fstest.MapFS
		want    []int // versions, in order
		wantErr string
	}{
		{
			name: "ordered by version, not by name",
			files: fstest.MapFS{
				"m/0010_ten.sql": file("ten"), "m/0002_two.sql": file("two"), "m/0001_one.sql": file("one"),
				"m/README": file("not a migration"),
			},
			want: []int{1, 2, 10},
		},
		{name: "no number", files: fstest.MapFS{"m/init.sql": file("")}, wantErr: "migration init.sql: name must be NNNN_description.sql"},
		{name: "no description", files: fstest.MapFS{"m/0001.sql": file("")}, wantErr: "migration 0001.sql: name must be NNNN_description.sql"},
		{name: "version zero", files: fstest.MapFS{"m/0000_zero.sql": file("")}, wantErr: "migration 0000_zero.sql: name must be NNNN_description.sql"},
		{name: "negative version", files: fstest.MapFS{"m/-001_minus.sql": file("")}, wantErr: "name must be NNNN_description.sql"},
		{
			name:    "shared version",
			files:   fstest.MapFS{"m/0001_a.sql": file(""), "m/001_b.sql": file(""), "m/0002_c.sql": file("")},
			wantErr: "migrations 0001_a.sql and 001_b.sql share version 1",
		},
		{name: "empty", files: fstest.MapFS{"m/README": file("")}, wantErr: "no migrations in m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Load(tc.files, "m")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load: got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, m := range ms {
				got = append(got, m.Version)
				if want := tc.files["m/"+m.Name]; want == nil || string(want.Data) != m.SQL {
					t.Errorf("migration %s: SQL %q does not match its file", m.Name, m.SQL)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("versions %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPending(t *testing.T) {
	ms := []Migration{{Version: 1, Name: "0001_a.sql"}, {Version: 2, Name: "0002_b.sql"}, {Version: 5, Name: "0005_c.sql"}}
	for _, tc := range []struct {
		current int
		want    []int
		wantErr string
	}{
		{current: 0, want: []int{1, 2, 5}},
		{current: 1, want: []int{2, 5}},
		{current: 3, want: []int{5}}, // a gap in the files is no gap in what is applied
		{current: 5, want: []int{}},
		{current: 6, wantErr: "database schema version 6 is newer than this Keyward's 5: upgrade Keyward"},
	} {
		got, err := Pending(ms, tc.current)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("Pending at %d: got %v, want %q", tc.current, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Pending at %d: %v", tc.current, err)
		}
		versions := []int{}
		for _, m := range got {
			versions = append(versions, m.Version)
		}
		if !reflect.DeepEqual(versions, tc.want) {
			t.Errorf("Pending at %d: %v, want %v", tc.current, versions, tc.want)
		}
	}
}

// TestDialectsAgree checks the backends' migration directories: each loads, and both carry the same versions
// under the same names, so a schema version means the same change on SQLite and on PostgreSQL.
func TestDialectsAgree(t *testing.T) {
	load := func(backend string) []Migration {
		ms, err := Load(os.DirFS("../"+backend), "migrations")
		if err != nil {
			t.Fatalf("%s migrations: %v", backend, err)
		}
		return ms
	}
	lite, pg := load("sqlite"), load("postgres")
	names := func(ms []Migration) []string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Name)
		}
		return s
	}
	if a, b := names(lite), names(pg); !reflect.DeepEqual(a, b) {
		t.Errorf("the dialects' migrations differ:\n sqlite   %v\n postgres %v", a, b)
	}
}

func TestUnapplied(t *testing.T) {
	ms := []Migration{{Version: 1, Name: "0001_a.sql"}, {Version: 2, Name: "0002_b.sql"}, {Version: 11, Name: "0011_c.sql"}, {Version: 12, Name: "0012_d.sql"}}
	for _, tc := range []struct {
		applied []int
		want    string
		err     bool
	}{
		{nil, "[1 2 11 12]", false},
		{[]int{1, 2}, "[11 12]", false},
		{[]int{1, 2, 12}, "[11]", false}, // 11 merged after a database reached 12
		{[]int{1, 2, 11, 12}, "[]", false},
		{[]int{1, 2, 13}, "", true},
	} {
		got, err := Unapplied(ms, tc.applied)
		if tc.err {
			if err == nil {
				t.Errorf("applied %v: no error for a newer database", tc.applied)
			}
			continue
		}
		vs := []int{}
		for _, m := range got {
			vs = append(vs, m.Version)
		}
		if err != nil || fmt.Sprint(vs) != tc.want {
			t.Errorf("applied %v: %v %v, want %s", tc.applied, vs, err, tc.want)
		}
	}
}
