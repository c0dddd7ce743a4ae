package api

// Shadow error types (x-amzn-ErrorType) besides ResourceNotFound,
// InvalidRequest and InternalFailure.
const (
	ErrConflict                    = "ConflictException"                    // 409
	ErrRequestEntityTooLarge       = "RequestEntityTooLargeException"       // 413
	ErrUnsupportedDocumentEncoding = "UnsupportedDocumentEncodingException" // 415
)

// maxShadowPageSize is the largest (and the default) pageSize of
// ListNamedShadowsForThing.
const maxShadowPageSize = 100

// ShadowDocument is a Device Shadow document: the response of
// GetThingShadow (all of the state, with the delta when desired and
// reported differ) and of UpdateThingShadow (only the sections of the
// request, their metadata, and the new version). Metadata holds
// {"timestamp": epoch seconds} per leaf. A section the update set to null
// decodes as nil.
type ShadowDocument struct {
	State       ShadowState    `json:"state"`
	Metadata    ShadowMetadata `json:"metadata"`
	Version     int64          `json:"version"`
	Timestamp   int64          `json:"timestamp"`
	ClientToken string         `json:"clientToken,omitempty"`
}

// ShadowState is the state of a ShadowDocument.
type ShadowState struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
	Delta    map[string]any `json:"delta,omitempty"`
}

// ShadowMetadata is the metadata of a ShadowDocument.
type ShadowMetadata struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// DeleteThingShadowResponse is DeleteThingShadow's response: the version
// the deleted shadow had.
type DeleteThingShadowResponse struct {
	Version   int64 `json:"version"`
	Timestamp int64 `json:"timestamp"`
}

// ListNamedShadowsForThingResponse is ListNamedShadowsForThing's response.
type ListNamedShadowsForThingResponse struct {
	Results   []string `json:"results"`
	NextToken string   `json:"nextToken,omitempty"`
	Timestamp int64    `json:"timestamp"`
}
