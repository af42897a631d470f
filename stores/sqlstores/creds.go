package sqlstores

import (
	"context"
	"database/sql"
	"fmt"

	"go.mau.fi/whatsmeow/store/sqlstore"

	"github.com/badmac/badmac/endpoint"
	"github.com/badmac/badmac/stores"
)

// The device's credentials live where whatsmeow keeps them: the identity
// key, signed prekey and registration id columns of its whatsmeow_device
// row, written with Container.PutDevice. A restart on the same database (a
// new container, as a new process) reloads them from there.
var _ stores.CredsStore = (*dbStorage)(nil)

// withContainer runs fn on a container of its own, closed afterwards.
func (s *dbStorage) withContainer(ctx context.Context, fn func(c *sqlstore.Container) error) error {
	c, err := s.newContainer(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

// LoadCreds reads the device row's keys, encoded as endpoint.Creds.Encode.
func (s *dbStorage) LoadCreds(ctx context.Context) ([]byte, error) {
	var out []byte
	err := s.withContainer(ctx, func(c *sqlstore.Container) error {
		dev, err := c.GetDevice(ctx, s.jid)
		if err != nil {
			return fmt.Errorf("%s: load device %s: %w", s.what, s.jid, oneLine{err})
		}
		if dev == nil {
			return nil
		}
		out = endpoint.Creds{Identity: dev.IdentityKey, SignedPreKey: dev.SignedPreKey, RegistrationID: dev.RegistrationID}.Encode()
		return nil
	})
	return out, err
}

// SaveCreds writes the credentials into the device row.
func (s *dbStorage) SaveCreds(ctx context.Context, b []byte) error {
	creds, err := endpoint.DecodeCreds(b)
	if err != nil {
		return fmt.Errorf("%s: %w", s.what, err)
	}
	// PutDevice never changes an existing row's keys (its upsert updates
	// only names and the LID), so the keys are written directly.
	spk := creds.SignedPreKey
	err = s.exec(ctx, `UPDATE whatsmeow_device SET identity_key=$1, signed_pre_key=$2, signed_pre_key_id=$3,
		signed_pre_key_sig=$4, registration_id=$5 WHERE jid=$6`,
		creds.Identity.Priv[:], spk.Priv[:], spk.KeyID, spk.Signature[:], creds.RegistrationID, s.jid.String())
	if err != nil {
		return fmt.Errorf("%s: save creds of %s: %w", s.what, s.jid, oneLine{err})
	}
	return nil
}

// execOne runs a statement that must change exactly one row.
func execOne(ctx context.Context, db *sql.DB, query string, args ...any) error {
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return fmt.Errorf("%d rows changed, want 1", n)
	}
	return nil
}
