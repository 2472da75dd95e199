package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/goqio/goqio/image"
)

// X509Config builds the client side of QEMU's tls-creds-x509 object
// (endpoint=client) from its directory: ca-cert.pem (needed),
// client-cert.pem and client-key.pem (both or neither). With verifyPeer
// (QEMU's default) the server's certificate must chain to the CA and,
// when hostname is not "", name it; QEMU checks no name when it has none
// (a UNIX socket without tls-hostname).
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
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, &Error{Msg: fmt.Sprintf("Cannot load CA certificate '%s': %v", ca, err), Err: syscall.EINVAL}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
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
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter}); err != nil {
				return &tls.CertificateVerificationError{UnverifiedCertificates: certs, Err: err}
			}
			if hostname != "" {
				if err := certs[0].VerifyHostname(hostname); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return cfg, nil
}
