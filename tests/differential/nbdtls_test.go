package differential

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
	"path/filepath"
	"testing"
	"time"
)

// makePKI writes a CA and, signed by it, a server and a client
// certificate for localhost into dir, as tls-creds-x509 wants them.
func makePKI(t *testing.T, dir string) {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := key()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "goqio test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write("ca-cert.pem", "CERTIFICATE", caDER)
	for i, who := range []string{"server", "client"} {
		k := key()
		usage := x509.ExtKeyUsageServerAuth
		if who == "client" {
			usage = x509.ExtKeyUsageClientAuth
		}
		c := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: "localhost"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, c, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		write(who+"-cert.pem", "CERTIFICATE", der)
		kb, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		write(who+"-key.pem", "EC PRIVATE KEY", kb)
	}
}

// TestNBDTLS: qemu-nbd requiring TLS; goqio's client with the right
// credentials, none, another CA, a hostname that does not match, and
// none to check, prints what qemu-io prints.
func TestNBDTLS(t *testing.T) {
	needTool(t, "qemu-nbd")
	top := t.TempDir()
	pki, other := filepath.Join(top, "pki"), filepath.Join(top, "other")
	makePKI(t, pki)
	makePKI(t, other)
	srv := []string{"--object", "tls-creds-x509,id=tls0,dir=" + pki + ",endpoint=server", "--tls-creds", "tls0"}
	obj := func(dir string, extra string) string {
		return "tls-creds-x509,id=tls0,dir=" + dir + ",endpoint=client" + extra
	}
	opts := "driver=nbd,path=SOCK,export=exp,tls-creds=tls0"
	var cases []nbdCase
	for _, a := range [][]string{
		{"--object", obj(pki, ""), "--image-opts", "-c", "read -P 0x11 0 4k", "-c", "info", opts + ",tls-hostname=localhost"},
		{"--object", obj(pki, ""), "--image-opts", "-c", "read 0 4k", opts},
		{"--object", obj(pki, ""), "--image-opts", "-c", "read 0 4k", opts + ",tls-hostname=other.example"},
		{"--object", obj(pki, ",verify-peer=off"), "--image-opts", "-c", "read -P 0x11 0 4k", opts},
		{"--object", obj(other, ""), "--image-opts", "-c", "read 0 4k", opts + ",tls-hostname=localhost"},
		{"--object", obj(pki, ",endpoint=server"), "--image-opts", "-c", "read 0 4k", opts},
		{"--object", obj(top, ""), "--image-opts", "-c", "read 0 4k", opts},
		{"-c", "read 0 4k", "URI"},
		{"--image-opts", "-c", "read 0 4k", "driver=nbd,path=SOCK,export=exp,tls-creds=nope"},
	} {
		cases = append(cases, nbdCase{Size: "1M", Setup: []string{"write -P 0x11 0 64k"}, Server: "qemu-nbd", ServerArgs: srv, Args: a})
	}
	runNBDCases(t, cases)
}
