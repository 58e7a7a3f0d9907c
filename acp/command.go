package acp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Op is a registry command's operation.
type Op uint8

// Registry operations.
const (
	opInvalid Op = iota
	// OpRegister records From as the owner of a VM not yet known.
	OpRegister
	// OpPlan starts a migration From -> To (From must own the VM).
	OpPlan
	// OpAdvance moves an in-flight migration to the state in Epoch
	// (precopy, then switchover).
	OpAdvance
	// OpHandover makes To the owner and raises the fencing epoch.
	OpHandover
	// OpAbort ends an in-flight migration without changing the owner.
	OpAbort
	// OpResume checks, in the total order, that From owns the VM at Epoch.
	OpResume
	opCount
)

var opNames = [...]string{"invalid", "register", "plan", "advance", "handover", "abort", "resume"}

func (o Op) String() string {
	if o < opCount {
		return opNames[o]
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Command is one registry command.
type Command struct {
	Op   Op
	VMID string
	From string
	To   string
	// Epoch is the fencing epoch for OpResume and the target state for
	// OpAdvance.
	Epoch uint64
}

// Result is a command's committed outcome: the error (nil on success) and
// the VM's record after the command.
type Result struct {
	Err   error
	Owner string
	Epoch uint64
	State MigrationState
}

// Wire format of a command (big endian):
//
//	magic 'A' 'C' | version u8 | op u8 | body length u32 | body | crc32c u32
//
// where body = vmID, from, to (each u16 length + bytes) and epoch u64. The
// CRC covers everything before it. Results use magic 'A' 'R' and a body of
// error code u8, owner, epoch u64, state u8.
const (
	wireVersion   = 1
	maxStringLen  = 1024
	maxCommandLen = 3*(2+maxStringLen) + 8
	headerLen     = 2 + 1 + 1 + 4
	trailerLen    = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errShort is returned by decoder when input ends early.
var errShort = errors.New("truncated input")

// EncodeCommand encodes a command. It fails on strings longer than 1 KiB.
func EncodeCommand(c Command) ([]byte, error) {
	if c.Op == opInvalid || c.Op >= opCount {
		return nil, fmt.Errorf("acp: encode command: invalid op %d", c.Op)
	}
	for _, s := range []string{c.VMID, c.From, c.To} {
		if len(s) > maxStringLen {
			return nil, fmt.Errorf("acp: encode command: string of %d bytes exceeds %d", len(s), maxStringLen)
		}
	}
	body := make([]byte, 0, 6+len(c.VMID)+len(c.From)+len(c.To)+8)
	body = appendString(body, c.VMID)
	body = appendString(body, c.From)
	body = appendString(body, c.To)
	body = binary.BigEndian.AppendUint64(body, c.Epoch)
	return frame('C', byte(c.Op), body), nil
}

// DecodeCommand decodes a command, checking magic, version, length and CRC.
func DecodeCommand(b []byte) (Command, error) {
	kind, body, err := unframe('C', b)
	if err != nil {
		return Command{}, fmt.Errorf("acp: decode command: %w", err)
	}
	op := Op(kind)
	if op == opInvalid || op >= opCount {
		return Command{}, fmt.Errorf("acp: decode command: invalid op %d", kind)
	}
	d := decoder{b: body}
	c := Command{Op: op, VMID: d.str(), From: d.str(), To: d.str(), Epoch: d.u64()}
	if d.err != nil {
		return Command{}, fmt.Errorf("acp: decode command: %w", d.err)
	}
	if len(d.b) != 0 {
		return Command{}, fmt.Errorf("acp: decode command: %d trailing bytes", len(d.b))
	}
	return c, nil
}

// EncodeResult encodes a result.
func EncodeResult(r Result) []byte {
	body := make([]byte, 0, 1+2+len(r.Owner)+8+1)
	body = append(body, errorCode(r.Err))
	body = appendString(body, r.Owner)
	body = binary.BigEndian.AppendUint64(body, r.Epoch)
	body = append(body, byte(r.State))
	if r.Err == nil {
		body[0] = 0
	}
	return frame('R', 0, body)
}

// DecodeResult decodes a result.
func DecodeResult(b []byte) (Result, error) {
	_, body, err := unframe('R', b)
	if err != nil {
		return Result{}, fmt.Errorf("acp: decode result: %w", err)
	}
	d := decoder{b: body}
	code := d.u8()
	r := Result{Owner: d.str(), Epoch: d.u64(), State: MigrationState(d.u8())}
	if d.err != nil {
		return Result{}, fmt.Errorf("acp: decode result: %w", d.err)
	}
	if len(d.b) != 0 {
		return Result{}, fmt.Errorf("acp: decode result: %d trailing bytes", len(d.b))
	}
	if int(code) >= len(registryErrors) || r.State >= stateCount {
		return Result{}, fmt.Errorf("acp: decode result: error code %d, state %d out of range", code, r.State)
	}
	r.Err = registryErrors[code]
	return r, nil
}

func frame(magic, kind byte, body []byte) []byte {
	b := make([]byte, 0, headerLen+len(body)+trailerLen)
	b = append(b, 'A', magic, wireVersion, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func unframe(magic byte, b []byte) (kind byte, body []byte, err error) {
	if len(b) < headerLen+trailerLen {
		return 0, nil, fmt.Errorf("%d bytes is shorter than the %d-byte frame minimum", len(b), headerLen+trailerLen)
	}
	if b[0] != 'A' || b[1] != magic {
		return 0, nil, fmt.Errorf("bad magic %q", b[:2])
	}
	if b[2] != wireVersion {
		return 0, nil, fmt.Errorf("unsupported version %d (want %d)", b[2], wireVersion)
	}
	n := binary.BigEndian.Uint32(b[4:8])
	if n > maxCommandLen || int(n) != len(b)-headerLen-trailerLen {
		return 0, nil, fmt.Errorf("body length %d does not match frame of %d bytes", n, len(b))
	}
	end := headerLen + int(n)
	if got, want := crc32.Checksum(b[:end], castagnoli), binary.BigEndian.Uint32(b[end:]); got != want {
		return 0, nil, fmt.Errorf("checksum mismatch: %08x != %08x", got, want)
	}
	return b[3], b[headerLen:end], nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decoder reads big-endian fields, remembering the first error so callers
// check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (d *decoder) str() string {
	v := d.take(2)
	if v == nil {
		return ""
	}
	n := int(binary.BigEndian.Uint16(v))
	if n > maxStringLen {
		d.err = fmt.Errorf("string of %d bytes exceeds %d", n, maxStringLen)
		return ""
	}
	return string(d.take(n))
}
