package evidence

import (
	"bytes"
	"html/template"
)

// page is a document of the pack as index.html and its sibling pages render it: headed sections of
// paragraphs, tables and links. No script, style sheet or image is fetched: the pack reads offline.
type page struct {
	Title    string
	Subtitle string
	Sections []section
	Index    bool // the index page itself (no link back)
}

type section struct {
	ID      string
	Heading string
	Level   int // 2 or 3
	Paras   []string
	Table   *table
	Links   []link
}

type table struct {
	Head []string
	Rows [][]string
}

type link struct {
	Href, Text, Note string
}

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.45;color:#111}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #999;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eee}
code{font-size:.9em}
</style>
</head>
<body>
{{if not .Index}}<p><a href="index.html">Evidence pack index</a></p>{{end}}
<h1>{{.Title}}</h1>
{{if .Subtitle}}<p>{{.Subtitle}}</p>{{end}}
{{range .Sections}}
{{if eq .Level 3}}<h3 id="{{.ID}}">{{.Heading}}</h3>{{else}}<h2 id="{{.ID}}">{{.Heading}}</h2>{{end}}
{{range .Paras}}<p>{{.}}</p>
{{end}}{{with .Table}}<table>
<tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>
{{end}}{{if .Links}}<ul>
{{range .Links}}<li><a href="{{.Href}}">{{.Text}}</a>{{if .Note}}: {{.Note}}{{end}}</li>
{{end}}</ul>
{{end}}{{end}}
</body>
</html>
`))

func (p *page) render() ([]byte, error) {
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, p); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
