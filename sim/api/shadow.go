package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"

	"github.com/thingd/thingd/sim/registry"
	"github.com/thingd/thingd/sim/shadow"
)

// maxShadowRequestBytes bounds an UpdateThingShadow body: the 128 KB of an
// MQTT payload, far above the 8 KB a shadow's state may have.
const maxShadowRequestBytes = 128 * 1024

// shadowErrorType is the x-amzn-ErrorType of a shadow refusal's status.
func shadowErrorType(code int) string {
	switch code {
	case http.StatusBadRequest:
		return ErrInvalidRequest
	case http.StatusNotFound:
		return ErrResourceNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusRequestEntityTooLarge:
		return ErrRequestEntityTooLarge
	case http.StatusUnsupportedMediaType:
		return ErrUnsupportedDocumentEncoding
	}
	return ErrInternalFailure
}

// shadowParams returns the thing and shadow name (the name query
// parameter, "" for the classic shadow) of a shadow operation.
func shadowParams(r *http.Request) (thing, name string, err error) {
	thing, name = r.PathValue("thingName"), r.URL.Query().Get("name")
	if err := registry.ValidateThingName(thing); err != nil {
		return "", "", err
	}
	if err := shadow.ValidateShadowName(name); err != nil {
		return "", "", invalid("%v", err)
	}
	return thing, name, nil
}

// shadowOp runs a shadow operation on the thing and shadow name of r and
// answers with the document it returns.
func shadowOp(r *http.Request, op func(thing, name string) ([]byte, error)) (any, error) {
	thing, name, err := shadowParams(r)
	if err != nil {
		return nil, err
	}
	doc, err := op(thing, name)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(doc), nil
}

func (h *handler) getThingShadow(r *http.Request) (any, error) { return shadowOp(r, h.Shadow.Get) }

func (h *handler) deleteThingShadow(r *http.Request) (any, error) {
	return shadowOp(r, h.Shadow.Delete)
}

func (h *handler) updateThingShadow(r *http.Request) (any, error) {
	return shadowOp(r, func(thing, name string) ([]byte, error) {
		body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxShadowRequestBytes))
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return nil, &Error{StatusCode: http.StatusRequestEntityTooLarge, Type: ErrRequestEntityTooLarge,
				Message: "The payload exceeds the maximum size allowed"}
		case err != nil:
			return nil, invalid("read request body: %v", err)
		}
		return h.Shadow.Update(thing, name, body)
	})
}

// listNamedShadowsForThing pages through the names in order; nextToken is
// the last name of the previous page.
func (h *handler) listNamedShadowsForThing(r *http.Request) (any, error) {
	thing := r.PathValue("thingName")
	if err := registry.ValidateThingName(thing); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	pageSize := maxShadowPageSize
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxShadowPageSize {
			return nil, invalid("pageSize %q must be between 1 and %d", v, maxShadowPageSize)
		}
		pageSize = n
	}
	names, err := h.Shadow.ListNamed(thing)
	if err != nil {
		return nil, err
	}
	if tok := q.Get("nextToken"); tok != "" {
		i, _ := slices.BinarySearch(names, tok)
		if i < len(names) && names[i] == tok {
			i++
		}
		names = names[i:]
	}
	resp := ListNamedShadowsForThingResponse{Results: nonNilSlice(names), Timestamp: h.Now().Unix()}
	if len(names) > pageSize {
		resp.Results, resp.NextToken = names[:pageSize], names[pageSize-1]
	}
	return resp, nil
}
