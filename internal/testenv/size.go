package testenv

// Size is a sweep's size: short in the default `go test ./...`, long when
// long sweeps are on (BADMAC_LONG=1, as CI runs the tests it names). A test
// sized this way shows the same things both ways at either size; the long
// size is where its figures come from.
func Size(short, long int) int {
	if Long() {
		return long
	}
	return short
}
