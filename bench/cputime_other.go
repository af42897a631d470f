//go:build !unix

package bench

import "time"

// ProcessCPU is not measured here: 0, and bench prints no CPU ratio.
func ProcessCPU() time.Duration { return 0 }
