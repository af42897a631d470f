package reports

import (
	_ "embed"
	"encoding/json"
	"io"
)

// Format is the report format version written to JSON (schema.json). v2:
// `blamed` is the pair failures by the outcome order (client-side crash
// losses apart), `pass` is true only when a gate ran and passed (`gate`
// says which), and rows gained `store_blamed`, `client_side`,
// `library_failures` and `library`.
const Format = "badmac report v2"

// Schema is the JSON Schema (draft 2020-12) of WriteJSON's output.
//
//go:embed schema.json
var Schema []byte

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, rep *Report) error {
	c := *rep
	c.Format = Format
	c.Gate = rep.Verdict()
	c.Pass = c.Gate == GatePass
	if c.Rows == nil {
		c.Rows = []Row{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(&c)
}
