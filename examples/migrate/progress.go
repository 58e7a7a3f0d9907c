package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dwcp/dwcp"
)

// progressBar draws one line with plain \r updates: no terminal library.
type progressBar struct {
	w          io.Writer
	quiet      bool
	round      int
	roundStart time.Time
	drawn      bool
	lastLen    int
}

func newProgressBar(w io.Writer, quiet bool) *progressBar {
	return &progressBar{w: w, quiet: quiet}
}

func (b *progressBar) update(p dwcp.Progress) {
	if b.quiet {
		return
	}
	now := time.Now()
	if p.Round != b.round {
		b.round, b.roundStart = p.Round, now
	}
	frac := 0.0
	if p.RoundPages > 0 {
		frac = float64(p.RoundPagesSent) / float64(p.RoundPages)
	}
	const width = 30
	filled := int(frac * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	eta := "--"
	if el := now.Sub(b.roundStart); p.RoundPagesSent > 0 && el > 0 && frac < 1 {
		rest := time.Duration(float64(el) * (1 - frac) / frac)
		eta = rest.Round(100 * time.Millisecond).String()
	}
	logicalRate := 0.0
	if p.Elapsed > 0 {
		logicalRate = float64(p.LogicalBytes) / p.Elapsed.Seconds()
	}
	line := fmt.Sprintf("\r%-13s round %-2d [%s] %3.0f%%  %s sent  %s/s guest  %s/s wire  ETA %s",
		p.Phase, p.Round, bar, 100*frac, byteSize(p.LogicalBytes), byteSize(int64(logicalRate)), byteSize(int64(p.WireRate)), eta)
	if p.Streams > 0 {
		line += fmt.Sprintf("  %d streams", p.Streams)
	}
	if p.Throttle > 0 {
		line += fmt.Sprintf("  throttle %d%%", p.Throttle)
	}
	if pad := b.lastLen - len(line); pad > 0 {
		line += strings.Repeat(" ", pad)
	}
	b.lastLen = len(line)
	fmt.Fprint(b.w, line)
	b.drawn = true
}

func (b *progressBar) finish() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}
