package kafka

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/IBM/sarama"
)

// Mechanism is a SASL mechanism for Config.Mechanism.
type Mechanism string

// SASL mechanisms. User and Password are the credentials of each.
const (
	MechanismPlain       Mechanism = sarama.SASLTypePlaintext   // "PLAIN"
	MechanismSCRAMSHA256 Mechanism = sarama.SASLTypeSCRAMSHA256 // "SCRAM-SHA-256"
	MechanismSCRAMSHA512 Mechanism = sarama.SASLTypeSCRAMSHA512 // "SCRAM-SHA-512"
)

// maxSCRAMIterations bounds the PBKDF2 work a server can ask of the client.
const maxSCRAMIterations = 1 << 20

// scramClient is a SCRAM client (RFC 5802, RFC 7677) for Sarama, without
// channel binding.
type scramClient struct {
	hash           func() hash.Hash
	user, password string
	nonce          string
	firstBare      string
	serverSig      []byte
	step           int
	done           bool
}

func newSCRAM(m Mechanism) func() sarama.SCRAMClient {
	h := sha256.New
	if m == MechanismSCRAMSHA512 {
		h = sha512.New
	}
	return func() sarama.SCRAMClient { return &scramClient{hash: h} }
}

func (c *scramClient) Begin(user, password, authzID string) error {
	if authzID != "" {
		return errors.New("scram: an authorization id is not supported")
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("scram: nonce: %w", err)
	}
	c.user, c.password = user, password
	c.nonce = base64.RawStdEncoding.EncodeToString(b)
	c.step, c.done, c.serverSig = 0, false, nil
	return nil
}

func (c *scramClient) Done() bool { return c.done }

func (c *scramClient) Step(challenge string) (string, error) {
	c.step++
	switch c.step {
	case 1:
		name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user)
		c.firstBare = "n=" + name + ",r=" + c.nonce
		return "n,," + c.firstBare, nil
	case 2:
		return c.final(challenge)
	case 3:
		c.done = true
		attrs := scramAttrs(challenge)
		if e, ok := attrs["e"]; ok {
			return "", fmt.Errorf("scram: server rejected the authentication: %s", e)
		}
		v, err := base64.StdEncoding.DecodeString(attrs["v"])
		if err != nil || subtle.ConstantTimeCompare(v, c.serverSig) != 1 {
			return "", errors.New("scram: the server's signature does not verify")
		}
		return "", nil
	default:
		return "", errors.New("scram: unexpected extra step")
	}
}

func (c *scramClient) final(serverFirst string) (string, error) {
	attrs := scramAttrs(serverFirst)
	if e, ok := attrs["e"]; ok {
		return "", fmt.Errorf("scram: server rejected the authentication: %s", e)
	}
	nonce := attrs["r"]
	if !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce) {
		return "", errors.New("scram: the server's nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(attrs["s"])
	if err != nil || len(salt) == 0 {
		return "", errors.New("scram: malformed salt")
	}
	iter, err := strconv.Atoi(attrs["i"])
	if err != nil || iter < 1 || iter > maxSCRAMIterations {
		return "", fmt.Errorf("scram: iteration count %q is not in 1..%d", attrs["i"], maxSCRAMIterations)
	}
	size := c.hash().Size()
	salted, err := pbkdf2.Key(c.hash, c.password, salt, iter, size)
	if err != nil {
		return "", fmt.Errorf("scram: %w", err)
	}
	clientKey := c.mac(salted, "Client Key")
	h := c.hash()
	h.Write(clientKey)
	storedKey := h.Sum(nil)
	withoutProof := "c=" + base64.StdEncoding.EncodeToString([]byte("n,,")) + ",r=" + nonce
	authMessage := c.firstBare + "," + serverFirst + "," + withoutProof
	proof := c.mac(storedKey, authMessage)
	for i := range proof {
		proof[i] ^= clientKey[i]
	}
	c.serverSig = c.mac(c.mac(salted, "Server Key"), authMessage)
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof), nil
}

func (c *scramClient) mac(key []byte, msg string) []byte {
	m := hmac.New(c.hash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramAttrs splits "k=v,k=v" (values may contain '=').
func scramAttrs(s string) map[string]string {
	attrs := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && len(k) == 1 {
			if _, dup := attrs[k]; !dup {
				attrs[k] = v
			}
		}
	}
	return attrs
}
