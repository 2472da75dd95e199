package nbd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pki is a CA and the certificates it signed, written as QEMU's and
// libnbd's credential directories expect them.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) *pki {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &pki{cert, key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes dir/ca-cert.pem (of ca) and dir/ROLE-cert.pem and
// dir/ROLE-key.pem signed by signer.
func issue(t *testing.T, dir, role string, ca, signer *pki) {
	os.MkdirAll(dir, 0o700)
	writePEM(t, filepath.Join(dir, "ca-cert.pem"), "CERTIFICATE", ca.cert.Raw)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	usage := x509.ExtKeyUsageServerAuth
	if role == "client" {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer.cert, &key.PublicKey, signer.key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(dir, role+"-cert.pem"), "CERTIFICATE", der)
	kd, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, filepath.Join(dir, role+"-key.pem"), "EC PRIVATE KEY", kd)
}

func tlsIO(s *server, dir, creds string) string {
	return run(dir, "qemu-io", "--object", "tls-creds-x509,id=tls0,endpoint=client,dir="+creds, "--image-opts",
		"-c", "write -P 0x3c 0 64k", "-c", "read -P 0x3c 0 64k", "-c", "map",
		"driver=raw,file.driver=nbd,file.server.type=unix,file.server.path="+s.sock+",file.tls-creds=tls0,file.tls-hostname=localhost")
}

func TestTLS(t *testing.T) {
	need(t, "nbdinfo")
	base := t.TempDir()
	ca, other := newCA(t, "goqio test CA"), newCA(t, "another CA")
	issue(t, filepath.Join(base, "server"), "server", ca, ca)
	issue(t, filepath.Join(base, "client"), "client", ca, ca)
	issue(t, filepath.Join(base, "wrongca"), "client", other, ca)   // does not trust the server
	issue(t, filepath.Join(base, "untrusted"), "client", ca, other) // a client certificate the server refuses
	args := []string{"--object", "tls-creds-x509,id=tls0,endpoint=server,dir=" + filepath.Join(base, "server"),
		"--tls-creds", "tls0", "-f", "qcow2", "-t", "t.qcow2"}
	// with the right credentials, and without TLS (refused, with the
	// server's reply text), the same as qemu-nbd
	sideBySide(t, chainSetup, args, true, []string{"t.qcow2"}, func(t *testing.T, s *server, dir string) string {
		info := exec.Command("nbdinfo", "--json", "nbds+unix:///?socket="+s.sock+"&tls-certificates="+filepath.Join(base, "client"))
		out, _ := info.CombinedOutput()
		wrong := exec.Command("nbdinfo", "nbds+unix:///?socket="+s.sock+"&tls-certificates="+filepath.Join(base, "wrongca"))
		wout, _ := wrong.CombinedOutput()
		return tlsIO(s, dir, filepath.Join(base, "client")) + string(out) + tlsIO(s, dir, filepath.Join(base, "wrongca")) +
			string(wout) + qemuIO(s, dir, "read 0 4k") + run(dir, "nbdinfo", s.uri())
	})
	// refused: a client that does not trust the server, a client the
	// server does not trust; the server goes on serving, and says what
	// qemu-nbd says (the client's words depend on the timing of the
	// server's close: not compared)
	msgs := map[string]string{}
	for _, name := range []string{"qemu", "goqio"} {
		dir := t.TempDir()
		sh(t, dir, chainSetup)
		s := start(t, servers(t)[name], dir, args...)
		for _, creds := range []string{"wrongca", "untrusted"} {
			if out := tlsIO(s, dir, filepath.Join(base, creds)); !strings.Contains(out, "[rc=1]") || strings.Contains(out, "wrote") {
				t.Errorf("%s %s: connected: %s", name, creds, out)
			}
			if creds == "untrusted" {
				out, err := exec.Command("nbdinfo", "nbds+unix:///?socket="+s.sock+"&tls-certificates="+filepath.Join(base, creds)).CombinedOutput()
				if err == nil {
					t.Errorf("%s %s: nbdinfo connected: %s", name, creds, out)
				}
			}
		}
		if out := tlsIO(s, dir, filepath.Join(base, "client")); !strings.Contains(out, "[rc=0]") {
			t.Errorf("%s: not served after refusals: %s", name, out)
		}
		s.stop()
		s.wait(t)
		msgs[name] = s.stderr.String()
	}
	if msgs["qemu"] != msgs["goqio"] {
		t.Errorf("server messages differ\nqemu-nbd:\n%s\ngoqio:\n%s", msgs["qemu"], msgs["goqio"])
	}
}
