package endpoint

import (
	"context"
	"errors"
	"fmt"

	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/signalerror"
	"go.mau.fi/libsignal/state/record"
)

// Class is the kind of a failed decryption attempt.
type Class string

// The failure classes of docs/design.md §5.
const (
	BadMAC            Class = "BadMAC"
	OldCounter        Class = "OldCounter"
	NoSession         Class = "NoSession"
	InvalidPreKey     Class = "InvalidPreKey"
	UntrustedIdentity Class = "UntrustedIdentity"
	NoSenderKey       Class = "NoSenderKey"
	StoreError        Class = "StoreError"
	Other             Class = "Other"
)

// Classes lists every class in report order.
var Classes = []Class{BadMAC, OldCounter, NoSession, InvalidPreKey, UntrustedIdentity, NoSenderKey, StoreError, Other}

// Failure is a classified decryption failure.
type Failure struct {
	Class Class
	Err   error
}

func (f *Failure) Error() string { return fmt.Sprintf("%s: %v", f.Class, f.Err) }
func (f *Failure) Unwrap() error { return f.Err }

// ClassOf returns the class of any error returned by this package.
func ClassOf(err error) Class {
	var f *Failure
	if errors.As(err, &f) {
		return f.Class
	}
	return classOf(err)
}

// StoreErr marks an error that the key store itself returned.
type StoreErr struct{ Err error }

func (e *StoreErr) Error() string { return "store: " + e.Err.Error() }
func (e *StoreErr) Unwrap() error { return e.Err }

func classOf(err error) Class {
	var se *StoreErr
	switch {
	case errors.As(err, &se):
		return StoreError
	case errors.Is(err, signalerror.ErrBadMAC):
		return BadMAC
	case errors.Is(err, signalerror.ErrOldCounter):
		return OldCounter
	case errors.Is(err, signalerror.ErrNoSessionForUser), errors.Is(err, signalerror.ErrUninitializedSession):
		return NoSession
	case errors.Is(err, signalerror.ErrNoOneTimeKeyFound), errors.Is(err, signalerror.ErrNoSignedPreKey):
		return InvalidPreKey
	case errors.Is(err, signalerror.ErrUntrustedIdentity):
		return UntrustedIdentity
	case errors.Is(err, signalerror.ErrNoSenderKeyForUser), errors.Is(err, signalerror.ErrNoSenderKeyStateForID),
		errors.Is(err, signalerror.ErrNoSenderKeyStatesInRecord):
		return NoSenderKey
	}
	return Other
}

// classify turns a libsignal decrypt error into a Failure. libsignal reports
// a MAC mismatch on every state as ErrNoValidSessions; to tell Bad MAC from a
// missing session we re-run the per-state decrypt on a fresh copy of the
// record the attempt decrypted from (used): for a msg the record as loaded,
// for a pkmsg the record after X3DH, whose current state is the one the
// message built (docs/design.md §3).
func classify(ctx context.Context, cipher *session.Cipher, err error, used []byte, msg *protocol.SignalMessage) error {
	class := classOf(err)
	if errors.Is(err, signalerror.ErrNoValidSessions) && msg != nil {
		class = NoSession
		if used != nil {
			rec, derr := record.NewSessionFromBytes(used, pb.Session, pb.State)
			if derr == nil {
				states := append([]*record.State{rec.SessionState()}, rec.PreviousSessionStates()...)
				for _, st := range states {
					_, _, serr := cipher.DecryptWithState(ctx, st, msg)
					if c := classOf(serr); serr != nil && c == BadMAC {
						class = BadMAC
						break
					}
				}
			}
		}
	}
	return &Failure{Class: class, Err: err}
}
