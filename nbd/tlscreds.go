package nbd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LoadX509Creds builds the TLS configuration of a tls-creds-x509 object
// as QEMU's crypto/tlscredsx509.c reads its directory: ca-cert.pem, and
// server-cert.pem/server-key.pem for the server endpoint (client-cert.pem
// and client-key.pem for a client, optional unless the server verifies
// peers). verifyPeer is the object's verify-peer (QEMU's default: on): a
// server then requires a client certificate signed by the CA; a client
// always checks the server's certificate against the CA.
func LoadX509Creds(dir string, server, verifyPeer bool) (*tls.Config, error) {
	read := func(name string, required bool) ([]byte, error) {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if err != nil {
			if !required && errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			var en syscall.Errno
			msg := err.Error()
			if errors.As(err, &en) {
				msg = strerror(en)
			}
			return nil, fmt.Errorf("Unable to access credentials %s: %s", p, msg)
		}
		return b, nil
	}
	caPEM, err := read("ca-cert.pem", server && verifyPeer || !server)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if caPEM != nil && !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("Unable to import CA certificate list %s", filepath.Join(dir, "ca-cert.pem"))
	}
	prefix := "client"
	if server {
		prefix = "server"
	}
	certPEM, err := read(prefix+"-cert.pem", server)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(prefix+"-key.pem", server)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if certPEM != nil && keyPEM != nil {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("Cannot load certificate '%s' & key '%s': %v",
				filepath.Join(dir, prefix+"-cert.pem"), filepath.Join(dir, prefix+"-key.pem"), err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if server {
		if verifyPeer {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
			cfg.ClientCAs = pool
		}
	} else {
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// strerror is glibc's text for the errnos a credentials file gives.
func strerror(e syscall.Errno) string {
	switch e {
	case syscall.ENOENT:
		return "No such file or directory"
	case syscall.EACCES:
		return "Permission denied"
	case syscall.EISDIR:
		return "Is a directory"
	}
	return e.Error()
}
