package hde

import "fmt"

// wrapf returns an error wrapping sentinel with a detail message.
func wrapf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{sentinel}, args...)...)
}
