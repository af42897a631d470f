package reports

import (
	_ "embed"
	"encoding/json"
	"io"
)

// Format is the report format version written to JSON (schema.json).
const Format = "badmac report v1"

// Schema is the JSON Schema (draft 2020-12) of WriteJSON's output.
//
//go:embed schema.json
var Schema []byte

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, rep *Report) error {
	c := *rep
	c.Format = Format
	if c.Rows == nil {
		c.Rows = []Row{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(&c)
}
