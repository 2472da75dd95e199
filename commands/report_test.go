package commands

import (
	"testing"
	"time"
)

func TestCvtstr(t *testing.T) {
	for v, want := range map[float64]string{
		65536: "64 KiB", 1536: "1.500 KiB", 1073676288: "1023.938 MiB", 3014656: "2.875 MiB",
		512: "512 bytes", 0: "0 bytes", 500.512274: "500.512274 bytes", 100352: "98 KiB",
		536870912: "512 MiB", 1 << 60: "1 EiB", 1 << 50: "1 PiB", 5 << 40: "5 TiB", 0.5: "0.500000 bytes",
		1023.9999: "1023.999900 bytes", 1024.5: "1 KiB",
	} {
		if got := Cvtstr(v); got != want {
			t.Errorf("Cvtstr(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestTimestr(t *testing.T) {
	for _, tc := range []struct {
		d     time.Duration
		fixed bool
		want  string
	}{
		{1234 * time.Microsecond, false, "00.00 sec"},
		{567 * time.Millisecond, false, "00.57 sec"},
		{178*time.Second + 480*time.Millisecond, false, "0:02:58.48"},
		{3*time.Hour + 5*time.Second, false, "3:00:05.00"},
		{10 * time.Millisecond, true, "0:00:00.01"},
	} {
		if got := timestr(tc.d, tc.fixed); got != tc.want {
			t.Errorf("timestr(%v, %v) = %q, want %q", tc.d, tc.fixed, got, tc.want)
		}
	}
}
