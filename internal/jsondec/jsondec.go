// Package jsondec is the reader under the decoders that internal/jsongen
// generates: a JSON scanner over a document in memory that hands the
// generated code names, strings, numbers and delimiters.
//
// A generated decoder is a fast path in front of
// github.com/go-json-experiment/json. For every input it accepts it gives
// the value that json.Unmarshal gives under the options it was generated
// for; anything else — malformed JSON, and rare input whose exact treatment
// it leaves to that library (escaped or non-ASCII names, numbers with a
// fraction or an exponent, invalid UTF-8, a value of the wrong JSON kind) —
// ends it with ErrOutside, and the caller decodes the same bytes again with
// the library, into a fresh value. So the scanner never needs to say what
// is wrong, only to never accept what the library refuses.
package jsondec

import (
	"errors"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// ErrOutside ends a generated decoder: the input is malformed or outside
// its subset. Decode it with go-json-experiment/json, which says which.
var ErrOutside = errors.New("jsondec: input outside the generated decoder's subset; decode it with go-json-experiment/json")

// maxDepth is go-json-experiment/json's nesting limit.
const maxDepth = 10000

// Decoder scans one JSON document.
type Decoder struct {
	buf     []byte
	pos     int
	depth   int
	scratch []byte // unquoted strings with escapes
	cache   stringCache
}

// Reset makes d read data from its start.
func (d *Decoder) Reset(data []byte) {
	d.buf, d.pos, d.depth = data, 0, 0
}

// End checks that only whitespace follows the value just read, and lets go
// of the data.
func (d *Decoder) End() error {
	d.skipSpace()
	rest := len(d.buf) - d.pos
	d.buf = nil
	if rest != 0 {
		return ErrOutside
	}
	return nil
}

func (d *Decoder) skipSpace() {
	for d.pos < len(d.buf) {
		switch d.buf[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// peek returns the next byte after whitespace, 0 at the end.
func (d *Decoder) peek() byte {
	d.skipSpace()
	if d.pos < len(d.buf) {
		return d.buf[d.pos]
	}
	return 0
}

// literal consumes lit (true, false or null).
func (d *Decoder) literal(lit string) error {
	if len(d.buf)-d.pos < len(lit) || string(d.buf[d.pos:d.pos+len(lit)]) != lit {
		return ErrOutside
	}
	d.pos += len(lit)
	return nil
}

// IsNull consumes a null if one is next.
func (d *Decoder) IsNull() bool {
	if d.peek() == 'n' && d.literal("null") == nil {
		return true
	}
	return false
}

// Open consumes the start of an object ('{') or an array ('['), or a null,
// for which it returns false.
func (d *Decoder) Open(want byte) (bool, error) {
	switch d.peek() {
	case want:
		if d.depth++; d.depth > maxDepth {
			return false, ErrOutside
		}
		d.pos++
		return true, nil
	case 'n':
		return false, d.literal("null")
	}
	return false, ErrOutside
}

// Next moves to member i (from 0) of the object or array being read, which
// end closes ('}' or ']'): it consumes the comma before the member, or the
// end, for which it returns false.
func (d *Decoder) Next(end byte, i int) (bool, error) {
	switch d.peek() {
	case end:
		d.pos++
		d.depth--
		return false, nil
	case ',':
		if i > 0 {
			d.pos++
			return true, nil
		}
	default:
		if i == 0 {
			return true, nil
		}
	}
	return false, ErrOutside
}

// Name reads an object member name and its colon. The bytes are valid until
// the next call.
func (d *Decoder) Name() ([]byte, error) {
	if d.peek() != '"' {
		return nil, ErrOutside
	}
	b, plain, err := d.str()
	if err != nil || !plain {
		return nil, ErrOutside
	}
	if d.peek() != ':' {
		return nil, ErrOutside
	}
	d.pos++
	return b, nil
}

// str consumes a string at pos (its opening quote) and returns its
// contents. plain: ASCII without escapes, so the contents are the value;
// otherwise they have been checked to unquote without error.
func (d *Decoder) str() (b []byte, plain bool, err error) {
	start := d.pos + 1
	i := start
	plain = true
	for {
		for i < len(d.buf) && !special[d.buf[i]] {
			i++
		}
		if i >= len(d.buf) {
			return nil, false, ErrOutside
		}
		switch c := d.buf[i]; {
		case c == '"':
			d.pos = i + 1
			if !plain {
				if d.scratch, err = jsontext.AppendUnquote(d.scratch[:0], d.buf[start-1:i+1]); err != nil {
					return nil, false, ErrOutside
				}
			}
			return d.buf[start:i], plain, nil
		case c == '\\':
			plain = false
			i += 2 // and the escaped byte; \u's digits are checked by the unquote
		case c < 0x20:
			return nil, false, ErrOutside
		default: // c >= 0x80
			plain = false
			i++
		}
	}
}

// special marks the bytes that end a run of plain string contents.
var special = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// String reads a string; null reads as "".
func (d *Decoder) String() (string, error) {
	switch d.peek() {
	case '"':
	case 'n':
		return "", d.literal("null")
	default:
		return "", ErrOutside
	}
	b, plain, err := d.str()
	if err != nil {
		return "", err
	}
	if plain {
		return d.cache.make(b), nil
	}
	return string(d.scratch), nil
}

// Bool reads a boolean; null reads as false.
func (d *Decoder) Bool() (bool, error) {
	switch d.peek() {
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return false, d.literal("null")
	}
	return false, ErrOutside
}

// number consumes a number and returns it; integer: it has neither a
// fraction nor an exponent.
func (d *Decoder) number() (b []byte, integer bool, err error) {
	start, i := d.pos, d.pos
	n := len(d.buf)
	if i < n && d.buf[i] == '-' {
		i++
	}
	switch {
	case i < n && d.buf[i] == '0':
		i++
	case i < n && d.buf[i] >= '1' && d.buf[i] <= '9':
		for i++; i < n && d.buf[i] >= '0' && d.buf[i] <= '9'; i++ {
		}
	default:
		return nil, false, ErrOutside
	}
	integer = true
	if i < n && d.buf[i] == '.' {
		integer = false
		j := i + 1
		for i = j; i < n && d.buf[i] >= '0' && d.buf[i] <= '9'; i++ {
		}
		if i == j {
			return nil, false, ErrOutside
		}
	}
	if i < n && (d.buf[i] == 'e' || d.buf[i] == 'E') {
		integer = false
		i++
		if i < n && (d.buf[i] == '+' || d.buf[i] == '-') {
			i++
		}
		j := i
		for ; i < n && d.buf[i] >= '0' && d.buf[i] <= '9'; i++ {
		}
		if i == j {
			return nil, false, ErrOutside
		}
	}
	d.pos = i
	return d.buf[start:i], integer, nil
}

// integer reads null, as nil digits, or a number without a fraction or an
// exponent: its digits, and whether a minus came before them.
func (d *Decoder) integer() (mag []byte, neg bool, err error) {
	switch c := d.peek(); {
	case c == 'n':
		return nil, false, d.literal("null")
	case c != '-' && (c < '0' || c > '9'):
		return nil, false, ErrOutside
	}
	b, integer, err := d.number()
	if err != nil || !integer {
		return nil, false, ErrOutside
	}
	if b[0] == '-' {
		return b[1:], true, nil
	}
	return b, false, nil
}

// Int reads an integer that fits in bits; null reads as 0.
func (d *Decoder) Int(bits uint) (int64, error) {
	b, neg, err := d.integer()
	if err != nil || b == nil {
		return 0, err
	}
	limit := uint64(1) << (bits - 1) // the magnitude of the most negative value
	u, ok := digits(b, limit)
	switch {
	case !ok:
		return 0, ErrOutside
	case neg:
		return -int64(u), nil
	case u == limit:
		return 0, ErrOutside
	}
	return int64(u), nil
}

// Uint reads an unsigned integer that fits in bits; null reads as 0.
func (d *Decoder) Uint(bits uint) (uint64, error) {
	b, neg, err := d.integer()
	if err != nil || b == nil {
		return 0, err
	}
	u, ok := digits(b, uint64(1<<(bits-1)-1)<<1|1)
	if neg || !ok {
		return 0, ErrOutside
	}
	return u, nil
}

// digits parses decimal digits up to limit.
func digits(b []byte, limit uint64) (uint64, bool) {
	var u uint64
	for _, c := range b {
		v := uint64(c - '0')
		if u > (limit-v)/10 {
			return 0, false
		}
		u = u*10 + v
	}
	return u, true
}

// Raw reads the next value whole, for an UnmarshalJSON method. The bytes are
// valid until the next call.
func (d *Decoder) Raw() ([]byte, error) {
	d.skipSpace()
	start := d.pos
	if err := d.Skip(); err != nil {
		return nil, err
	}
	return d.buf[start:d.pos], nil
}

// Skip consumes the next value, checking its syntax, for a member the
// decoded type does not have.
func (d *Decoder) Skip() error {
	var stackBuf [64]byte
	stack := stackBuf[:0] // the closers of what is open here, innermost last
	for {
		// At a value.
		switch c := d.peek(); c {
		case '{', '[':
			if d.depth+len(stack)+1 >= maxDepth {
				return ErrOutside
			}
			d.pos++
			end := byte('}')
			if c == '[' {
				end = ']'
			}
			if d.peek() == end {
				d.pos++
				break
			}
			stack = append(stack, end)
			if end == '}' {
				if err := d.skipName(); err != nil {
					return err
				}
			}
			continue
		case '"':
			if _, _, err := d.str(); err != nil {
				return err
			}
		case 't':
			if err := d.literal("true"); err != nil {
				return err
			}
		case 'f':
			if err := d.literal("false"); err != nil {
				return err
			}
		case 'n':
			if err := d.literal("null"); err != nil {
				return err
			}
		default:
			if _, _, err := d.number(); err != nil {
				return err
			}
		}
		// After a value: the ends of what closes here, then a comma.
		for {
			if len(stack) == 0 {
				return nil
			}
			end := stack[len(stack)-1]
			c := d.peek()
			if c == end {
				d.pos++
				stack = stack[:len(stack)-1]
				continue
			}
			if c != ',' {
				return ErrOutside
			}
			d.pos++
			if end == '}' {
				if err := d.skipName(); err != nil {
					return err
				}
			}
			break
		}
	}
}

// skipName consumes a member name, plain or not, and its colon.
func (d *Decoder) skipName() error {
	if d.peek() != '"' {
		return ErrOutside
	}
	if _, _, err := d.str(); err != nil {
		return err
	}
	if d.peek() != ':' {
		return ErrOutside
	}
	d.pos++
	return nil
}

// stringCache hands out one string for short values seen again (protocol
// names, API versions, pull policies), as go-json-experiment/json does, to
// save an allocation per field.
type stringCache [256]string

func (c *stringCache) make(b []byte) string {
	n := len(b)
	if n < 2 || n > 32 {
		return string(b)
	}
	h := (((uint(n)*31+uint(b[0]))*31+uint(b[1]))*31+uint(b[n-2]))*31 + uint(b[n-1])
	e := &c[h%uint(len(c))]
	if *e == string(b) {
		return *e
	}
	*e = string(b)
	return *e
}

// Key returns a map key read by Name as a string.
func (d *Decoder) Key(name []byte) string { return d.cache.make(name) }

var decoders = sync.Pool{New: func() any { return new(Decoder) }}

// Decode runs decode on a decoder reading data, and checks that only
// whitespace follows the value.
func Decode(data []byte, decode func(*Decoder) error) error {
	d := decoders.Get().(*Decoder)
	d.Reset(data)
	err := decode(d)
	if err2 := d.End(); err == nil {
		err = err2
	}
	decoders.Put(d)
	return err
}
