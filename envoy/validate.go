package envoy

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// validatorAll is what protoc-gen-validate generates for every Envoy message.
type validatorAll interface{ ValidateAll() error }

// ValidateDeep runs the protoc-gen-validate rules of m (ValidateAll) and of
// every message packed in a google.protobuf.Any inside it, at any depth:
// ValidateAll alone stops at an Any. A packed type that is not linked into
// the binary, or that carries fields unknown to its schema, is an error too.
func ValidateDeep(m proto.Message) error {
	path := string(m.ProtoReflect().Descriptor().FullName())
	if v, ok := m.(validatorAll); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return validateDeep(m.ProtoReflect(), path)
}

// validateDeep walks m; nested messages are covered by the ValidateAll of
// the message holding them, except those packed in an Any.

func validateDeep(m protoreflect.Message, path string) error {
	if !m.IsValid() {
		return nil
	}
	if len(m.GetUnknown()) > 0 {
		return fmt.Errorf("%s: fields unknown to %s", path, m.Descriptor().FullName())
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: unpack %s: %w", path, a.GetTypeUrl(), err)
		}
		path += "(" + string(inner.ProtoReflect().Descriptor().FullName()) + ")"
		if v, ok := inner.(validatorAll); ok {
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		return validateDeep(inner.ProtoReflect(), path)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		at := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = validateDeep(l.Get(i).Message(), fmt.Sprintf("%s[%d]", at, i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = validateDeep(mv.Message(), fmt.Sprintf("%s[%v]", at, k.Interface()))
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = validateDeep(v.Message(), at)
		}
		return err == nil
	})
	return err
}
