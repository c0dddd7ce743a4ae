package policy

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"slices"
	"strconv"
	"strings"
)

// Context is who makes a request: the values policy variables and condition
// keys resolve to.
type Context struct {
	ClientID      string
	CertificateID string
	SourceIP      string // aws:SourceIp; "" if unknown
	// Thing is the thing the connection acts as: set only when the ClientID
	// is the name of a thing the certificate is attached to. nil makes the
	// iot:Connection.Thing.* variables unresolvable (IsAttached is "false").
	Thing *Thing
	// Certificate holds the certificate variables, from
	// CertificateVariables: "Subject.CommonName" → values, ...
	Certificate map[string][]string
}

// Thing is the thing of a connection.
type Thing struct {
	Name       string
	TypeName   string
	Attributes map[string]string
}

// distinguished name attributes of the certificate variables, by their
// variable name.
var dnAttributes = []struct {
	name string
	oid  asn1.ObjectIdentifier
}{
	{"CommonName", asn1.ObjectIdentifier{2, 5, 4, 3}},
	{"SerialNumber", asn1.ObjectIdentifier{2, 5, 4, 5}},
	{"Country", asn1.ObjectIdentifier{2, 5, 4, 6}},
	{"State", asn1.ObjectIdentifier{2, 5, 4, 8}},
	{"Organization", asn1.ObjectIdentifier{2, 5, 4, 10}},
	{"OrganizationalUnit", asn1.ObjectIdentifier{2, 5, 4, 11}},
	{"Title", asn1.ObjectIdentifier{2, 5, 4, 12}},
	{"Surname", asn1.ObjectIdentifier{2, 5, 4, 4}},
	{"GivenName", asn1.ObjectIdentifier{2, 5, 4, 42}},
	{"Initials", asn1.ObjectIdentifier{2, 5, 4, 43}},
	{"GenerationQualifier", asn1.ObjectIdentifier{2, 5, 4, 44}},
	{"DistinguishedNameQualifier", asn1.ObjectIdentifier{2, 5, 4, 46}},
	{"Pseudonym", asn1.ObjectIdentifier{2, 5, 4, 65}},
}

// CertificateVariables returns the iot:Certificate.* variables of a
// certificate, keyed without the "iot:Certificate." prefix
// ("Subject.CommonName", "Issuer.Organization",
// "Subject.AlternativeName.DNSName", "SerialNumber"), each with its values
// in certificate order (at most 5, as AWS caps arrays). SerialNumber is the
// certificate serial in decimal.
func CertificateVariables(cert *x509.Certificate) map[string][]string {
	vars := map[string][]string{}
	add := func(key string, values ...string) {
		if len(values) > 5 {
			values = values[:5]
		}
		if len(values) > 0 {
			vars[key] = values
		}
	}
	for _, side := range []struct {
		prefix string
		name   pkix.Name
	}{{"Subject.", cert.Subject}, {"Issuer.", cert.Issuer}} {
		for _, attr := range dnAttributes {
			var values []string
			for _, atv := range side.name.Names {
				if s, ok := atv.Value.(string); ok && atv.Type.Equal(attr.oid) {
					values = append(values, s)
				}
			}
			add(side.prefix+attr.name, values...)
		}
	}
	alt := "Subject.AlternativeName."
	add(alt+"DNSName", cert.DNSNames...)
	add(alt+"RFC822Name", cert.EmailAddresses...)
	for _, u := range cert.URIs {
		vars[alt+"UniformResourceIdentifier"] = append(vars[alt+"UniformResourceIdentifier"], u.String())
	}
	for _, ip := range cert.IPAddresses {
		vars[alt+"IPAddress"] = append(vars[alt+"IPAddress"], ip.String())
	}
	if cert.SerialNumber != nil {
		add("SerialNumber", cert.SerialNumber.String())
	}
	return vars
}

// resolution of a variable or condition key.
type resolution struct {
	values []string
	ok     bool // resolvable
	// literal: a certificate value AWS does not substitute (too long or
	// with * $ + ? #); the ${...} text stays.
	literal bool
}

// resolve returns the values of a variable or condition key (case as AWS
// spells them).
func (c *Context) resolve(key string) resolution {
	one := func(v string, ok bool) resolution {
		if !ok {
			return resolution{}
		}
		return resolution{values: []string{v}, ok: true}
	}
	switch key {
	case "iot:ClientId":
		return one(c.ClientID, c.ClientID != "")
	case "iot:CertificateId":
		return one(c.CertificateID, c.CertificateID != "")
	case "aws:SourceIp":
		return one(c.SourceIP, c.SourceIP != "")
	case "iot:Connection.Thing.IsAttached":
		return one(strconv.FormatBool(c.Thing != nil), true)
	case "iot:Connection.Thing.ThingName":
		return one(c.thingField(func(t *Thing) string { return t.Name }))
	case "iot:Connection.Thing.ThingTypeName":
		return one(c.thingField(func(t *Thing) string { return t.TypeName }))
	case "iot:Certificate.AvailableKeys":
		keys := make([]string, 0, len(c.Certificate))
		for k := range c.Certificate {
			keys = append(keys, "iot:Certificate."+k)
		}
		slices.Sort(keys)
		return resolution{values: keys, ok: len(keys) > 0}
	}
	if attr, ok := strings.CutPrefix(key, "iot:Connection.Thing.Attributes["); ok {
		attr, ok = strings.CutSuffix(attr, "]")
		if !ok {
			return resolution{}
		}
		return one(c.thingField(func(t *Thing) string { return t.Attributes[attr] }))
	}
	if name, ok := strings.CutPrefix(key, "iot:Certificate."); ok {
		return c.certificate(name)
	}
	return resolution{}
}

func (c *Context) thingField(f func(*Thing) string) (string, bool) {
	if c.Thing == nil {
		return "", false
	}
	v := f(c.Thing)
	return v, v != ""
}

// certificate resolves a certificate variable name: X (first value), X.N
// (the N-th, from 1) or X.List (all).
func (c *Context) certificate(name string) resolution {
	values, index := c.Certificate[name], 1
	if values == nil {
		base, suffix, ok := cutLast(name, ".")
		if !ok {
			return resolution{}
		}
		values = c.Certificate[base]
		if suffix == "List" {
			return resolution{values: values, ok: len(values) > 0}
		}
		n, err := strconv.Atoi(suffix)
		if err != nil || n < 1 {
			return resolution{}
		}
		index = n
	}
	if index > len(values) {
		return resolution{}
	}
	v := values[index-1]
	return resolution{values: []string{v}, ok: true, literal: len(v) > 1024 || strings.ContainsAny(v, "*$+?#")}
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
