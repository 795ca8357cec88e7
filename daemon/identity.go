package daemon

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/pkid/pkid/auth"
	"github.com/pkid/pkid/policy"
)

// MachineCredentials are a new machine identity's credentials, made by
// `pkid identity add`. The secret exists only here: the config gets its
// hash.
type MachineCredentials struct {
	Name, ClientID, ClientSecret string
	// Stanza is the machineIdentities entry for the config, in YAML.
	Stanza string
}

// NewMachineIdentity makes a client id, a client secret and its argon2id
// hash for a machine identity called name.
func NewMachineIdentity(name string) (*MachineCredentials, error) {
	if _, err := policy.MachineIdentity(name); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	id, secret, err := auth.NewClientCredentials()
	if err != nil {
		return nil, err
	}
	hash, err := auth.HashSecret(secret)
	if err != nil {
		return nil, err
	}
	stanza := fmt.Sprintf("machineIdentities:\n  - name: %s\n    clientId: %s\n    clientSecretHash: %q\n    accessTokenTTL: 2h\n    accessTokenMaxTTL: 24h\n",
		name, id, hash)
	return &MachineCredentials{Name: name, ClientID: id, ClientSecret: secret, Stanza: stanza}, nil
}

// StaticToken is a new static token ("token auth") of a machine identity,
// made by `pkid identity token`; the config gets its SHA-256.
type StaticToken struct {
	Name, Token, Hash string
	Stanza            string // the staticTokens entry, in YAML
}

// NewStaticToken makes a static token for the machine identity name.
func NewStaticToken(name string) (*StaticToken, error) {
	if _, err := policy.MachineIdentity(name); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	tok, hash, err := auth.NewStaticToken()
	if err != nil {
		return nil, err
	}
	return &StaticToken{Name: name, Token: tok, Hash: hash,
		Stanza: fmt.Sprintf("    staticTokens:\n      - %q\n", hash)}, nil
}

// WriteSecretFile writes a secret to path, readable by its owner only, and
// refuses to replace a file: a secret shown once must not silently
// overwrite another.
func WriteSecretFile(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists; not replacing a secret", path)
		}
		return err
	}
	if _, err := f.WriteString(strings.TrimSpace(secret)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
