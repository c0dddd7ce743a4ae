package keystore

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Schemes understood by ParseURI.
const (
	SchemePKCS11 = "pkcs11"
	SchemeTPM    = "tpm"
	SchemeFile   = "file"
)

// Attr is one name=value pair of a URI, already percent-decoded.
type Attr struct {
	Name, Value string
}

// URI is a parsed key reference. It is parsed once, at the edge (config, CLI),
// and then passed around; its String method never shows a PIN.
//
// PKCS#11 keys use RFC 7512:
//
//	pkcs11:token=LABEL;object=LABEL;id=%01?module-path=/path/lib.so&pin-source=file:/path/pin
//
// The query may carry pin-value instead of pin-source (tests only: the PIN is
// then in the config file). TPM keys name a persistent handle and, optionally,
// the TPM to use:
//
//	tpm:handle=0x81000100                       (/dev/tpmrm0, falling back to /dev/tpm0)
//	tpm:handle=0x81000100?device=/dev/tpmrm0
//	tpm:handle=0x81000100?device=tcp:127.0.0.1:2321       (swtpm or a TPM simulator over TCP)
//	tpm:handle=0x81000100?device=unix:/run/swtpm/sock     (swtpm unixio socket)
//
// Development keys are PEM files: file:/var/lib/thingd/key.pem.
type URI struct {
	// Scheme is "pkcs11", "tpm" or "file".
	Scheme string
	// Path holds the path attributes in order (for file: a single "path").
	Path []Attr
	// Query holds the query attributes in order.
	Query []Attr
}

// URIError is returned by ParseURI. It names the part of the URI that is
// wrong; the URI it quotes is redacted.
type URIError struct {
	URI    string // redacted input
	Part   string // the offending component, e.g. `attribute "tokn"`
	Reason string
}

func (e *URIError) Error() string {
	if e.Part == "" {
		return fmt.Sprintf("keystore: bad key URI %q: %s", e.URI, e.Reason)
	}
	return fmt.Sprintf("keystore: bad key URI %q: %s: %s", e.URI, e.Part, e.Reason)
}

var (
	pkcs11PathAttrs = []string{"token", "manufacturer", "serial", "model", "library-manufacturer",
		"library-description", "library-version", "object", "type", "id", "slot-description",
		"slot-manufacturer", "slot-id"}
	pkcs11QueryAttrs = []string{"pin-source", "pin-value", "module-name", "module-path"}
	tpmPathAttrs     = []string{"handle"}
	tpmQueryAttrs    = []string{"device"}
	secretAttrs      = []string{"pin-value"}
)

// ParseURI parses and validates a key URI. Errors are *URIError values that
// point at the wrong part and never contain a PIN.
func ParseURI(s string) (*URI, error) {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || scheme == "" {
		return nil, &URIError{URI: redactRaw(s), Reason: `no scheme: want "pkcs11:", "tpm:" or "file:"`}
	}
	u := &URI{Scheme: strings.ToLower(scheme)}
	bad := func(part, format string, args ...any) error {
		return &URIError{URI: redactRaw(s), Part: part, Reason: fmt.Sprintf(format, args...)}
	}
	switch u.Scheme {
	case SchemeFile:
		p := rest
		if strings.HasPrefix(p, "//") {
			// file:///abs/path or file://localhost/abs/path
			p = strings.TrimPrefix(p[2:], "localhost")
		}
		dec, err := url.PathUnescape(p)
		if err != nil {
			return nil, bad("path", "bad percent-encoding: %v", err)
		}
		if dec == "" {
			return nil, bad("path", "empty file path")
		}
		if !filepath.IsAbs(dec) {
			return nil, bad("path", "%q is not an absolute path", dec)
		}
		u.Path = []Attr{{"path", filepath.Clean(dec)}}
		return u, nil
	case SchemePKCS11, SchemeTPM:
	default:
		return nil, bad("scheme", "unknown scheme %q: want pkcs11, tpm or file", scheme)
	}

	pathPart, queryPart, _ := strings.Cut(rest, "?")
	pathAllowed, queryAllowed := pkcs11PathAttrs, pkcs11QueryAttrs
	if u.Scheme == SchemeTPM {
		pathAllowed, queryAllowed = tpmPathAttrs, tpmQueryAttrs
	}
	var err error
	if u.Path, err = parseAttrs(pathPart, ";", "path attribute", pathAllowed, bad); err != nil {
		return nil, err
	}
	if u.Query, err = parseAttrs(queryPart, "&", "query attribute", queryAllowed, bad); err != nil {
		return nil, err
	}

	switch u.Scheme {
	case SchemePKCS11:
		if u.Attr("token") == "" && u.Attr("serial") == "" && u.Attr("slot-id") == "" {
			return nil, bad("path", `no token: add token=LABEL (or serial= / slot-id=)`)
		}
		if u.QueryAttr("module-path") == "" {
			return nil, bad("query", "no module-path: add ?module-path=/path/to/pkcs11-module.so")
		}
		if !filepath.IsAbs(u.QueryAttr("module-path")) {
			return nil, bad(`attribute "module-path"`, "%q is not an absolute path", u.QueryAttr("module-path"))
		}
		if u.has("pin-source") && u.has("pin-value") {
			return nil, bad(`attribute "pin-value"`, "give pin-source or pin-value, not both")
		}
		if ps := u.QueryAttr("pin-source"); ps != "" {
			if _, err := pinFilePath(ps); err != nil {
				return nil, bad(`attribute "pin-source"`, "%v", err)
			}
		}
		if v := u.Attr("slot-id"); v != "" {
			if _, err := strconv.ParseUint(v, 10, 64); err != nil {
				return nil, bad(`attribute "slot-id"`, "%q is not a decimal number", v)
			}
		}
		if t := u.Attr("type"); t != "" && t != "private" && t != "public" {
			return nil, bad(`attribute "type"`, "%q: only private and public keys are used", t)
		}
	case SchemeTPM:
		if h := u.Attr("handle"); h != "" {
			if _, err := parseHandle(h); err != nil {
				return nil, bad(`attribute "handle"`, "%v", err)
			}
		}
		if d := u.QueryAttr("device"); d != "" {
			if err := checkTPMDevice(d); err != nil {
				return nil, bad(`attribute "device"`, "%v", err)
			}
		}
	}
	return u, nil
}

// MustParseURI is ParseURI for constants in tests; it panics on error.
func MustParseURI(s string) *URI {
	u, err := ParseURI(s)
	if err != nil {
		panic(err)
	}
	return u
}

func parseAttrs(s, sep, what string, allowed []string, bad func(string, string, ...any) error) ([]Attr, error) {
	if s == "" {
		return nil, nil
	}
	var out []Attr
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, sep) {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, bad(fmt.Sprintf("%s %q", what, redactAttrName(k)), "missing '='")
		}
		name, err := url.PathUnescape(k)
		if err != nil {
			return nil, bad(fmt.Sprintf("%s %q", what, k), "bad percent-encoding")
		}
		name = strings.ToLower(name)
		if !slices.Contains(allowed, name) && !strings.HasPrefix(name, "x-") {
			return nil, bad(fmt.Sprintf("%s %q", what, name), "unknown attribute (known: %s)", strings.Join(allowed, ", "))
		}
		if seen[name] {
			return nil, bad(fmt.Sprintf("%s %q", what, name), "given twice")
		}
		seen[name] = true
		val, err := url.PathUnescape(v)
		if err != nil {
			if slices.Contains(secretAttrs, name) {
				return nil, bad(fmt.Sprintf("%s %q", what, name), "bad percent-encoding")
			}
			return nil, bad(fmt.Sprintf("%s %q", what, name), "bad percent-encoding in %q", v)
		}
		out = append(out, Attr{name, val})
	}
	return out, nil
}

func redactAttrName(k string) string {
	if len(k) > 32 {
		return k[:32] + "..."
	}
	return k
}

// Attr returns the decoded value of a path attribute, or "".
func (u *URI) Attr(name string) string {
	for _, a := range u.Path {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// QueryAttr returns the decoded value of a query attribute, or "".
func (u *URI) QueryAttr(name string) string {
	for _, a := range u.Query {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

func (u *URI) has(name string) bool {
	for _, a := range u.Query {
		if a.Name == name {
			return true
		}
	}
	return false
}

// FilePath returns the path of a file: URI.
func (u *URI) FilePath() string { return u.Attr("path") }

// Handle returns the TPM persistent handle of a tpm: URI, or 0 if none is set.
func (u *URI) Handle() uint32 {
	h, _ := parseHandle(u.Attr("handle"))
	return h
}

// WithAttr returns a copy of u with path attribute name set to value (added
// if absent). It is how A/B key slots are derived from one configured URI.
func (u *URI) WithAttr(name, value string) *URI {
	c := u.clone()
	for i := range c.Path {
		if c.Path[i].Name == name {
			c.Path[i].Value = value
			return c
		}
	}
	c.Path = append(c.Path, Attr{name, value})
	return c
}

func (u *URI) clone() *URI {
	return &URI{Scheme: u.Scheme, Path: slices.Clone(u.Path), Query: slices.Clone(u.Query)}
}

// PIN resolves the PIN of a pkcs11: URI: the content of the pin-source file
// (trailing newline removed) or the pin-value. ok is false when the URI names
// no PIN. Errors never contain the PIN.
func (u *URI) PIN() (pin string, ok bool, err error) {
	if src := u.QueryAttr("pin-source"); src != "" {
		p, err := pinFilePath(src)
		if err != nil {
			return "", false, fmt.Errorf("keystore: pin-source: %w", err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return "", false, fmt.Errorf("keystore: read pin-source: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), true, nil
	}
	if u.has("pin-value") {
		return u.QueryAttr("pin-value"), true, nil
	}
	return "", false, nil
}

func pinFilePath(src string) (string, error) {
	p := src
	if rest, ok := strings.CutPrefix(src, "file:"); ok {
		p = strings.TrimPrefix(rest, "//")
	} else if strings.Contains(src, ":") {
		return "", fmt.Errorf("%q: only file: PIN sources are supported", src)
	}
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%q is not an absolute path", src)
	}
	return p, nil
}

// String returns the URI in canonical form with secrets redacted; it is the
// same as Redacted, so a URI printed by accident never leaks a PIN.
func (u *URI) String() string { return u.Redacted() }

// Redacted returns the URI without any PIN value (pin-value is dropped;
// pin-source, which names a file and not the PIN, is kept). Use it in logs,
// errors and status output.
func (u *URI) Redacted() string { return u.format(true) }

// Secret returns the full URI, PIN included. Only for writing the URI back to
// where the user put it.
func (u *URI) Secret() string { return u.format(false) }

func (u *URI) format(redact bool) string {
	if u.Scheme == SchemeFile {
		return "file:" + escapeValue(u.FilePath(), true)
	}
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteByte(':')
	for i, a := range u.Path {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(a.Name)
		b.WriteByte('=')
		b.WriteString(escapeValue(a.Value, false))
	}
	first := true
	for _, a := range u.Query {
		if redact && slices.Contains(secretAttrs, a.Name) {
			continue
		}
		if first {
			b.WriteByte('?')
			first = false
		} else {
			b.WriteByte('&')
		}
		b.WriteString(a.Name)
		b.WriteByte('=')
		b.WriteString(escapeValue(a.Value, true))
	}
	return b.String()
}

// escapeValue percent-encodes what RFC 7512 does not allow unescaped.
func escapeValue(v string, query bool) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == ':', c == '[', c == ']', c == '@',
			c == '!', c == '$', c == '\'', c == '(', c == ')', c == '*', c == '+', c == ',', c == '=':
			b.WriteByte(c)
		case c == '/' || c == '?' && query:
			b.WriteByte(c)
		case c == '&' && !query:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// redactRaw removes pin-value from an unparsed URI string, for error messages.
func redactRaw(s string) string {
	q := strings.IndexByte(s, '?')
	if q < 0 {
		return s
	}
	parts := strings.Split(s[q+1:], "&")
	kept := parts[:0]
	for _, p := range parts {
		name, _, _ := strings.Cut(p, "=")
		if n, err := url.PathUnescape(name); err == nil && strings.EqualFold(n, "pin-value") {
			continue
		}
		if strings.Contains(strings.ToLower(name), "pin-value") {
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		return s[:q]
	}
	return s[:q+1] + strings.Join(kept, "&")
}

func parseHandle(s string) (uint32, error) {
	if s == "" {
		return 0, errors.New("empty handle")
	}
	v, err := strconv.ParseUint(s, 0, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number (want e.g. 0x81000100)", s)
	}
	if v < 0x81000000 || v > 0x81FFFFFF {
		return 0, fmt.Errorf("%#x is not a persistent handle (want 0x81000000-0x81ffffff)", v)
	}
	return uint32(v), nil
}

func checkTPMDevice(d string) error {
	switch {
	case strings.HasPrefix(d, "tcp:"):
		hp := strings.TrimPrefix(d, "tcp:")
		if _, port, ok := strings.Cut(hp, ":"); !ok || port == "" {
			return fmt.Errorf("%q: want tcp:HOST:PORT", d)
		}
	case strings.HasPrefix(d, "unix:"):
		if !filepath.IsAbs(strings.TrimPrefix(d, "unix:")) {
			return fmt.Errorf("%q: want unix:/absolute/socket/path", d)
		}
	case filepath.IsAbs(d):
	default:
		return fmt.Errorf("%q: want a device path (/dev/tpmrm0), tcp:HOST:PORT or unix:/PATH", d)
	}
	return nil
}
