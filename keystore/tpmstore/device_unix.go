//go:build !windows

package tpmstore

import (
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
	"github.com/google/go-tpm/tpm2/transport/linuxudstpm"
)

// openCharDevice opens a TPM character device such as /dev/tpmrm0.
func openCharDevice(path string) (transport.TPMCloser, error) { return linuxtpm.Open(path) }

// openSocket opens an swtpm unixio server socket.
func openSocket(path string) (transport.TPMCloser, error) { return linuxudstpm.Open(path) }
