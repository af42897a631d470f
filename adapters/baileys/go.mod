// Not a Go module: this file only keeps `go test ./...` and `go vet ./...`
// of badmac out of the adapter's node_modules (some npm packages ship Go
// sources).
module github.com/badmac/badmac/adapters/baileys

go 1.26
