package image_test

import (
	"fmt"
	"syscall"
	"testing"

	"github.com/goqio/goqio/image"
)

// Strerror gives glibc's texts, also for the errnos Go has no text for.
func TestStrerror(t *testing.T) {
	for e, want := range map[syscall.Errno]string{
		0:                   "Success",
		syscall.EPERM:       "Operation not permitted",
		syscall.ENOENT:      "No such file or directory",
		syscall.EIO:         "Input/output error",
		syscall.EACCES:      "Permission denied",
		syscall.EINVAL:      "Invalid argument",
		syscall.EFBIG:       "File too large",
		syscall.ENOSPC:      "No space left on device",
		syscall.ERANGE:      "Numerical result out of range",
		syscall.EOPNOTSUPP:  "Operation not supported",
		syscall.ENOMEDIUM:   "No medium found",
		syscall.EAGAIN:      "Resource temporarily unavailable",
		41:                  "Unknown error 41",
		58:                  "Unknown error 58",
		133:                 "Memory page has hardware error",
		134:                 "Unknown error 134",
		syscall.Errno(4000): "Unknown error 4000",
	} {
		if got := image.Strerror(e); got != want {
			t.Errorf("Strerror(%d) = %q, want %q", int(e), got, want)
		}
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{image.ErrNoMedium, "No medium found"},
		{image.ErrNotSupported, "Operation not supported"},
		{fmt.Errorf("wrapped: %w", syscall.ENOSPC), "No space left on device"},
		{fmt.Errorf("no errno"), "Input/output error"},
	} {
		if got := image.StrerrorOf(c.err); got != c.want {
			t.Errorf("StrerrorOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
