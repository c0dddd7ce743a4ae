package serialport

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.bug.st/serial/enumerator"
)

// listFunc lists the serial ports present, as enumerator.GetDetailedPortsList
// does. Tests replace it: the enumerator does not list pseudo-terminals.
type listFunc func() ([]*enumerator.PortDetails, error)

// listPorts is the real listFunc.
func listPorts() ([]*enumerator.PortDetails, error) {
	return enumerator.GetDetailedPortsList()
}

// findUSB lists the ports with list and returns the path of the one USB
// serial device that matches id.
func findUSB(id USBID, list listFunc) (string, error) {
	ports, err := list()
	if err != nil {
		return "", &portError{op: "find", port: "usb:" + id.String(), err: fmt.Errorf("list serial ports: %w", err)}
	}
	return matchUSB(id, ports)
}

// matchUSB returns the path of the one port in ports that matches id. With
// no match the error matches ErrNotFound; with several it matches none of
// the sentinels (the configuration must name the device more precisely).
// Both list what was found.
func matchUSB(id USBID, ports []*enumerator.PortDetails) (string, error) {
	var usb, matches []*enumerator.PortDetails
	for _, p := range ports {
		if p == nil || !p.IsUSB {
			continue
		}
		usb = append(usb, p)
		if hexEqual(p.VID, id.VID) && hexEqual(p.PID, id.PID) && (id.Serial == "" || p.SerialNumber == id.Serial) {
			matches = append(matches, p)
		}
	}
	name := "usb:" + id.String()
	switch len(matches) {
	case 1:
		return matches[0].Name, nil
	case 0:
		found := "no USB serial devices present"
		if len(usb) > 0 {
			found = "found " + describe(usb)
		}
		return "", &portError{op: "find", port: name, kind: ErrNotFound, text: "no matching USB serial device", err: errors.New(found)}
	default:
		hint := "add /SERIAL to the usb id to choose one"
		if id.Serial != "" {
			hint = "they share the serial number; use a path under /dev/serial/by-path instead"
		}
		return "", &portError{op: "find", port: name,
			err: fmt.Errorf("%d devices match: %s; %s", len(matches), describe(matches), hint)}
	}
}

// hexEqual reports whether the enumerator's hex id s (sysfs gives lower
// case, other systems upper case) equals v.
func hexEqual(s string, v uint16) bool {
	n, err := strconv.ParseUint(s, 16, 16)
	return err == nil && uint16(n) == v
}

// describe lists ports as "PATH (usb:VID:PID/SERIAL)", sorted by path.
func describe(ports []*enumerator.PortDetails) string {
	ports = slices.SortedFunc(slices.Values(ports), func(a, b *enumerator.PortDetails) int {
		return cmp.Compare(a.Name, b.Name)
	})
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		id := strings.ToLower(p.VID) + ":" + strings.ToLower(p.PID)
		if p.SerialNumber != "" {
			id += "/" + p.SerialNumber
		}
		parts = append(parts, fmt.Sprintf("%s (usb:%s)", p.Name, id))
	}
	return strings.Join(parts, ", ")
}
