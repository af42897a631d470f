package reports

import (
	_ "embed"
	"encoding/json"
	"io"
)

// Format is the report format version written to JSON (schema.json). v3:
// `client_side` (what the reference store lost as badly under the same
// client and crash, the client's races included) is gone; `lost_to_crash`
// counts only what a crash or a restore explains by its cause, and
// `blamed` holds the rest. v2: `blamed` by the outcome order, `pass` only
// when a gate ran and passed (`gate`), `store_blamed`, `library_failures`,
// `library`.
const Format = "badmac report v3"

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
	c.Rows = make([]Row, len(rep.Rows))
	for i, r := range rep.Rows {
		r.Rate, r.RateLo, r.RateHi = r.PairRate()
		c.Rows[i] = r
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(&c)
}
