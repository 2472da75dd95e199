package nbd

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
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
// server then asks for a client certificate (GnuTLS's GNUTLS_CERT_REQUEST:
// the handshake goes through without one) and checks it after the
// handshake with VerifyClient, as qcrypto_tls_session_check_credentials;
// a client always checks the server's certificate against the CA.
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
			cfg.ClientAuth = tls.RequestClientCert
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

// TLSReason is a peer certificate refused, worded as QEMU's
// qcrypto_tls_session_check_certificate words GnuTLS's verdict.
type TLSReason string

func (r TLSReason) Error() string { return string(r) }

// VerifyClient is what a QEMU server checks of its client once the
// handshake is done, with a config from LoadX509Creds: nothing unless it
// asked for a certificate (verify-peer); then one must have come, chaining
// to the CA.
func VerifyClient(cfg *tls.Config, cs tls.ConnectionState) error {
	if cfg.ClientAuth != tls.RequestClientCert {
		return nil
	}
	if len(cs.PeerCertificates) == 0 {
		// gnutls_certificate_verify_peers2: GNUTLS_E_NO_CERTIFICATE_FOUND
		return TLSReason("Verify failed: No certificate was found.")
	}
	return VerifyChain(cs.PeerCertificates, cfg.ClientCAs, nil, x509.ExtKeyUsageAny)
}

// VerifyChain checks a peer's chain (leaf first) against the CA pool as
// GnuTLS does, and words a refusal as QEMU: no CA of the issuer's name is
// "hasn't got a known issuer" (GNUTLS_CERT_SIGNER_NOT_FOUND), a CA of that
// name that did not sign it, or an expired certificate, "is not trusted"
// (GNUTLS_CERT_INVALID). cas are the pool's certificates (nil: taken from
// the pool's subjects).
func VerifyChain(certs []*x509.Certificate, roots *x509.CertPool, cas []*x509.Certificate, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err == nil {
		return nil
	}
	reason := "The certificate hasn't got a known issuer"
	var ie x509.CertificateInvalidError
	if errors.As(err, &ie) {
		reason = "The certificate is not trusted"
	}
	issuer := string(certs[len(certs)-1].RawIssuer)
	if cas != nil {
		for _, c := range cas {
			if string(c.RawSubject) == issuer {
				reason = "The certificate is not trusted"
			}
		}
	} else if roots != nil {
		//lint:ignore SA1019 the subjects of a pool made from PEM files, not the system pool
		for _, subj := range roots.Subjects() {
			if string(subj) == issuer {
				reason = "The certificate is not trusted"
			}
		}
	}
	return TLSReason(reason)
}

// ParseCerts returns the certificates of a PEM file's blocks (the ones
// that parse).
func ParseCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			return out
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
