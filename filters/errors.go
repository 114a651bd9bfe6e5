package filters

import (
	"fmt"
	"strings"
)

// FieldError is a configuration problem with one field of a filter's config. The gateway
// adds the route, the filter and where the value came from (file:line or Consul key).
type FieldError struct {
	// Field is the field's path inside the filter config, e.g. "rate" or "tiers.wechat.rate".
	Field string
	// Value is the offending value as the operator wrote it (may be empty for a missing field).
	Value any
	// Msg says what is wrong and what is expected, e.g. "must be > 0".
	Msg string
}

func (e *FieldError) Error() string {
	if e.Value == nil {
		return fmt.Sprintf("%s: %s", e.Field, e.Msg)
	}
	return fmt.Sprintf("%s: %s (got %v)", e.Field, e.Msg, e.Value)
}

// Errorf returns a FieldError for field with value and a formatted message.
func Errorf(field string, value any, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Value: value, Msg: fmt.Sprintf(format, args...)}
}

// Errors collects several problems so that one validation reports all of them.
type Errors []error

// Add appends err if it is not nil.
func (es *Errors) Add(err error) {
	if err == nil {
		return
	}
	if more, ok := err.(Errors); ok {
		*es = append(*es, more...)
		return
	}
	*es = append(*es, err)
}

// Err returns nil when there are no problems, else es.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap lets errors.As find a FieldError inside.
func (es Errors) Unwrap() []error { return es }
