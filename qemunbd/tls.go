package qemunbd

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/nbd"
)

// tlsSetup is the TLS credentials of --tls-creds.
type tlsSetup struct {
	config *tls.Config
}

// loadCreds checks a tls-creds-x509 object as QEMU completes it at
// --object time: its directory's files are read for its endpoint.
func loadCreds(g *formats.Graph, def string) error {
	for _, part := range formats.SplitOptions(def) {
		id, ok := strings.CutPrefix(part, "id=")
		if !ok {
			continue
		}
		obj := g.Objects.Get(id)
		if obj == nil || obj.Type != "tls-creds-x509" {
			return nil
		}
		_, err := nbd.LoadX509Creds(obj.Props["dir"], obj.Props["endpoint"] == "server", verifyPeer(obj))
		return err
	}
	return nil
}

func verifyPeer(obj *formats.Object) bool {
	switch obj.Props["verify-peer"] {
	case "off", "no", "false":
		return false
	}
	return true
}

// tlsCreds is nbd_get_tls_creds: the object named id, which must be TLS
// credentials for the server endpoint (the client one with -L).
func tlsCreds(g *formats.Graph, id string, list bool) (*tlsSetup, error) {
	obj := g.Objects.Get(id)
	if obj == nil {
		return nil, fmt.Errorf("No TLS credentials with id '%s'", id)
	}
	switch obj.Type {
	case "tls-creds-x509", "tls-creds-psk", "tls-creds-anon":
	default:
		return nil, fmt.Errorf("Object with id '%s' is not TLS credentials", id)
	}
	want := "server"
	if list {
		want = "client"
	}
	endpoint := obj.Props["endpoint"]
	if endpoint == "" {
		endpoint = "client"
	}
	if endpoint != want {
		return nil, fmt.Errorf("Expecting TLS credentials with a %s endpoint", want)
	}
	if obj.Type != "tls-creds-x509" {
		return nil, fmt.Errorf("goqio supports only tls-creds-x509 credentials (object '%s' is %s)", id, obj.Type)
	}
	cfg, err := nbd.LoadX509Creds(obj.Props["dir"], !list, verifyPeer(obj))
	if err != nil {
		return nil, err
	}
	return &tlsSetup{config: cfg}, nil
}
