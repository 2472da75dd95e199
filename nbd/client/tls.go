package client

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/nbd"
)

// errNoHostname: QEMU's client refuses a verified peer it has no name to
// check against (qcrypto_tls_session_check_certificate).
var errNoHostname = errors.New("No hostname for certificate validation")

// X509Config builds the client side of QEMU's tls-creds-x509 object
// (endpoint=client) from its directory: ca-cert.pem (needed),
// client-cert.pem and client-key.pem (both or neither). With verifyPeer
// (QEMU's default) the server's certificate must chain to the CA and,
// name hostname; with verifyPeer and no hostname (a UNIX socket without
// tls-hostname) QEMU refuses the peer: "No hostname for certificate
// validation".
func X509Config(dir string, verifyPeer bool, hostname string) (*tls.Config, error) {
	path := func(name string, required bool) (string, error) {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			if !required {
				return "", nil
			}
			var en syscall.Errno
			if !errors.As(err, &en) {
				en = syscall.ENOENT
			}
			return "", &Error{Msg: fmt.Sprintf("Unable to access credentials %s: %s", p, image.Strerror(en)), Err: en}
		}
		return p, nil
	}
	ca, err := path("ca-cert.pem", true)
	if err != nil {
		return nil, err
	}
	cert, err := path("client-cert.pem", false)
	if err != nil {
		return nil, err
	}
	key, err := path("client-key.pem", false)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return nil, &Error{Msg: fmt.Sprintf("Cannot load CA certificate '%s': %v", ca, err), Err: syscall.EINVAL}
	}
	pool := x509.NewCertPool()
	caCerts := nbd.ParseCerts(caPEM)
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, &Error{Msg: fmt.Sprintf("Cannot load CA certificate '%s': Base64 decoding error.", ca), Err: syscall.EINVAL}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	if cert != "" && key != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, &Error{Msg: fmt.Sprintf("Cannot load certificate '%s' & key '%s': %v", cert, key, err), Err: syscall.EINVAL}
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	// the chain is verified here, so that a missing hostname (or
	// verify-peer=off) can skip the parts QEMU skips
	cfg.InsecureSkipVerify = true
	if verifyPeer {
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, b := range raw {
				c, err := x509.ParseCertificate(b)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			if err := nbd.VerifyChain(certs, pool, caCerts, x509.ExtKeyUsageServerAuth); err != nil {
				return err
			}
			if hostname == "" {
				return errNoHostname
			}
			return certs[0].VerifyHostname(hostname)
		}
	}
	return cfg, nil
}

// CheckX509Dir is what QEMU checks when a tls-creds-x509 object is
// created (qcrypto_tls_creds_x509_load): the files the endpoint needs
// are there, and with sanityCheck the object's own certificate chains to
// its CA.
func CheckX509Dir(dir string, server, sanityCheck bool) error {
	need := []string{"ca-cert.pem", "client-cert.pem", "client-key.pem"}
	required := []bool{true, false, false}
	if server {
		need = []string{"ca-cert.pem", "server-cert.pem", "server-key.pem"}
		required = []bool{true, true, true}
	}
	var have []string
	for i, name := range need {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			if !required[i] {
				have = append(have, "")
				continue
			}
			var en syscall.Errno
			if !errors.As(err, &en) {
				en = syscall.ENOENT
			}
			return &Error{Msg: fmt.Sprintf("Unable to access credentials %s: %s", p, image.Strerror(en)), Err: en}
		}
		have = append(have, p)
	}
	if !sanityCheck || have[1] == "" {
		return nil
	}
	caPEM, err1 := os.ReadFile(have[0])
	certPEM, err2 := os.ReadFile(have[1])
	if err1 != nil || err2 != nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return &Error{Msg: fmt.Sprintf("Unable to import certificate %s: Base64 decoding error.", have[1]), Err: syscall.EINVAL}
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return &Error{Msg: fmt.Sprintf("Unable to import certificate %s: %v", have[1], err), Err: syscall.EINVAL}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return &Error{Msg: fmt.Sprintf("Our own certificate %s failed validation against %s: The certificate hasn't got a known issuer", have[1], have[0]), Err: syscall.EINVAL}
	}
	return nil
}
