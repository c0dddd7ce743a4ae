//go:build windows

package tpmstore

import (
	"errors"

	"github.com/google/go-tpm/tpm2/transport"
)

var errNoDevices = errors.New("TPM device files and unix sockets are not supported on Windows; use tcp:HOST:PORT or Options.Transport")

func openCharDevice(string) (transport.TPMCloser, error) { return nil, errNoDevices }

func openSocket(string) (transport.TPMCloser, error) { return nil, errNoDevices }
