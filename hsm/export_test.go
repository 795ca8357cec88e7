package hsm

import (
	"crypto/elliptic"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// generateExtractable makes the kind of key pkid must refuse.
func generateExtractable(tok *Token, label string) error {
	pub, _ := crypto11.NewAttributeSetWithIDAndLabel([]byte(label), []byte(label))
	priv, _ := crypto11.NewAttributeSetWithIDAndLabel([]byte(label), []byte(label))
	priv[pkcs11.CKA_EXTRACTABLE] = pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)
	b, err := tok.current()
	if err != nil {
		return err
	}
	_, err = b.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
	return err
}
