package qdict

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// QEMU's JSON dialect (qobject/json-lexer.c, json-streamer.c,
// json-parser.c): RFC 8259 plus single-quoted strings, with QEMU's limits
// and error messages. The lexer is the same deterministic automaton, so
// an input fails with the same message as under QEMU.

type tokType int

const (
	tokError tokType = iota
	tokLCurly
	tokRCurly
	tokLSquare
	tokRSquare
	tokColon
	tokComma
	tokInteger
	tokFloat
	tokKeyword
	tokString
	tokEOI
)

type token struct {
	typ tokType
	s   string
}

// lexer states
const (
	inRecovery = iota + 1
	inDQEscape
	inDQ
	inSQEscape
	inSQ
	inZero
	inExpDigits
	inExpSign
	inExpE
	inMantissa
	inMantissaDigits
	inDigits
	inSign
	inKeyword
	inStart
)

// next returns the next state (or a token type, as -typ) for state st and
// byte c, and whether c is consumed.
func next(st int, c byte) (ns int, tok tokType, consumed bool) {
	term := func(t tokType) (int, tokType, bool) { return 0, t, false } // lookahead terminal
	emit := func(t tokType) (int, tokType, bool) { return 0, t, true }
	errTok := func() (int, tokType, bool) { return 0, tokError, true }
	stay := func(s int) (int, tokType, bool) { return s, -1, true }
	switch st {
	case inRecovery:
		switch {
		case c < 0x20 && c != '\t', c >= 0xFE, c == '[', c == ']', c == '{', c == '}', c == ':', c == ',':
			return inStart, -1, false
		}
		return stay(inRecovery)
	case inDQEscape:
		if c >= 0x20 && c <= 0xFD {
			return stay(inDQ)
		}
		return errTok()
	case inDQ:
		switch {
		case c == '\\':
			return stay(inDQEscape)
		case c == '"':
			return emit(tokString)
		case c >= 0x20 && c <= 0xFD:
			return stay(inDQ)
		}
		return errTok()
	case inSQEscape:
		if c >= 0x20 && c <= 0xFD {
			return stay(inSQ)
		}
		return errTok()
	case inSQ:
		switch {
		case c == '\\':
			return stay(inSQEscape)
		case c == '\'':
			return emit(tokString)
		case c >= 0x20 && c <= 0xFD:
			return stay(inSQ)
		}
		return errTok()
	case inZero:
		switch {
		case c >= '0' && c <= '9':
			return errTok()
		case c == '.':
			return stay(inMantissa)
		}
		return term(tokInteger)
	case inExpDigits:
		if c >= '0' && c <= '9' {
			return stay(inExpDigits)
		}
		return term(tokFloat)
	case inExpSign:
		if c >= '0' && c <= '9' {
			return stay(inExpDigits)
		}
		return errTok()
	case inExpE:
		switch {
		case c == '-', c == '+':
			return stay(inExpSign)
		case c >= '0' && c <= '9':
			return stay(inExpDigits)
		}
		return errTok()
	case inMantissaDigits:
		switch {
		case c >= '0' && c <= '9':
			return stay(inMantissaDigits)
		case c == 'e', c == 'E':
			return stay(inExpE)
		}
		return term(tokFloat)
	case inMantissa:
		if c >= '0' && c <= '9' {
			return stay(inMantissaDigits)
		}
		return errTok()
	case inDigits:
		switch {
		case c >= '0' && c <= '9':
			return stay(inDigits)
		case c == 'e', c == 'E':
			return stay(inExpE)
		case c == '.':
			return stay(inMantissa)
		}
		return term(tokInteger)
	case inSign:
		switch {
		case c == '0':
			return stay(inZero)
		case c >= '1' && c <= '9':
			return stay(inDigits)
		}
		return errTok()
	case inKeyword:
		if c >= 'a' && c <= 'z' {
			return stay(inKeyword)
		}
		return term(tokKeyword)
	case inStart:
		switch {
		case c == '"':
			return stay(inDQ)
		case c == '\'':
			return stay(inSQ)
		case c == '0':
			return stay(inZero)
		case c >= '1' && c <= '9':
			return stay(inDigits)
		case c == '-':
			return stay(inSign)
		case c == '{':
			return emit(tokLCurly)
		case c == '}':
			return emit(tokRCurly)
		case c == '[':
			return emit(tokLSquare)
		case c == ']':
			return emit(tokRSquare)
		case c == ',':
			return emit(tokComma)
		case c == ':':
			return emit(tokColon)
		case c >= 'a' && c <= 'z':
			return stay(inKeyword)
		case c == ' ', c == '\t', c == '\r', c == '\n':
			return 0, -2, true // whitespace: back to start
		}
		return errTok()
	}
	return errTok()
}

const (
	maxTokenSize  = 64 << 20
	maxTokenCount = 2 << 20
	maxNesting    = 1 << 10
)

// streamer is json-streamer.c: it gathers tokens into messages and parses
// each complete one.
type streamer struct {
	tokens    []token
	size      int
	braces    int
	brackets  int
	result    any
	hasResult bool
	err       error
}

func (s *streamer) emit(v any, err error) {
	if s.hasResult {
		s.result, s.hasResult = nil, false
		s.err = errors.New("Expecting at most one JSON value")
	}
	if s.err != nil {
		return
	}
	if err != nil {
		s.err = err
		return
	}
	s.result, s.hasResult = v, true
}

func (s *streamer) reset() {
	s.braces, s.brackets, s.tokens, s.size = 0, 0, nil, 0
}

func (s *streamer) process(t token) {
	switch t.typ {
	case tokLCurly:
		s.braces++
	case tokRCurly:
		s.braces--
	case tokLSquare:
		s.brackets++
	case tokRSquare:
		s.brackets--
	case tokError:
		s.reset()
		s.emit(nil, fmt.Errorf("JSON parse error, stray '%s'", t.s))
		return
	case tokEOI:
		if len(s.tokens) == 0 {
			return
		}
		v, err := parseTokens(s.tokens)
		s.reset()
		s.emit(v, err)
		return
	}
	if s.size+len(t.s)+1 > maxTokenSize {
		s.reset()
		s.emit(nil, errors.New("JSON token size limit exceeded"))
		return
	}
	if len(s.tokens)+1 > maxTokenCount {
		s.reset()
		s.emit(nil, errors.New("JSON token count limit exceeded"))
		return
	}
	if s.braces+s.brackets > maxNesting {
		s.reset()
		s.emit(nil, errors.New("JSON nesting depth limit exceeded"))
		return
	}
	s.tokens = append(s.tokens, t)
	s.size += len(t.s)
	if (s.braces > 0 || s.brackets > 0) && s.braces >= 0 && s.brackets >= 0 {
		return
	}
	v, err := parseTokens(s.tokens)
	s.reset()
	s.emit(v, err)
}

// ParseJSON is qobject_from_json: exactly one JSON value in QEMU's dialect.
func ParseJSON(input string) (any, error) {
	s := &streamer{}
	st := inStart
	var tok []byte
	feed := func(c byte, flush bool) {
		consumed := false
		for {
			if flush {
				if st == inStart {
					return
				}
			} else if consumed {
				return
			}
			ns, t, cons := next(st, c)
			if flush {
				cons = false
			}
			consumed = cons
			if cons {
				tok = append(tok, c)
			}
			switch {
			case t == -2: // whitespace
				tok = tok[:0]
				st = inStart
			case t == -1:
				st = ns
				if st == inStart { // from recovery, lookahead
					tok = tok[:0]
				}
				if st == inRecovery {
					tok = tok[:0]
				}
			case t == tokError:
				s.process(token{tokError, string(tok)})
				tok = tok[:0]
				st = inRecovery
				if flush {
					// recovery takes the NUL (a control character) back to start
					st = inStart
				}
			default:
				s.process(token{t, string(tok)})
				tok = tok[:0]
				st = inStart
			}
		}
	}
	for i := 0; i < len(input); i++ {
		feed(input[i], false)
		if len(tok) > maxTokenSize {
			s.process(token{tokError, string(tok)})
			tok = tok[:0]
			st = inStart
		}
	}
	feed(0, true)
	s.process(token{typ: tokEOI})
	if s.err != nil {
		return nil, s.err
	}
	if !s.hasResult {
		return nil, errors.New("Expecting a JSON value")
	}
	return s.result, nil
}

// parser is json-parser.c over one message's tokens.
type parser struct {
	toks []token
	err  error
}

func parseTokens(toks []token) (any, error) {
	p := &parser{toks: toks}
	v := p.value()
	if p.err != nil {
		return nil, p.err
	}
	return v, nil
}

func (p *parser) fail(format string, a ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("JSON parse error, "+format, a...)
	}
}

func (p *parser) peek() *token {
	if len(p.toks) == 0 {
		return nil
	}
	return &p.toks[0]
}

func (p *parser) pop() *token {
	if len(p.toks) == 0 {
		return nil
	}
	t := &p.toks[0]
	p.toks = p.toks[1:]
	return t
}

func (p *parser) value() any {
	t := p.peek()
	if t == nil {
		p.fail("premature EOI")
		return nil
	}
	switch t.typ {
	case tokLCurly:
		return p.object()
	case tokLSquare:
		return p.array()
	case tokInteger, tokFloat, tokString:
		return p.literal()
	case tokKeyword:
		p.pop()
		switch t.s {
		case "true":
			return true
		case "false":
			return false
		case "null":
			return Null{}
		}
		p.fail("invalid keyword '%s'", t.s)
		return nil
	}
	p.fail("expecting value")
	return nil
}

func (p *parser) pair(d *Dict) bool {
	if p.peek() == nil {
		p.fail("premature EOI")
		return false
	}
	k, ok := p.value().(string)
	if !ok {
		p.fail("key is not a string in object")
		return false
	}
	t := p.pop()
	if t == nil {
		p.fail("premature EOI")
		return false
	}
	if t.typ != tokColon {
		p.fail("missing : in object pair")
		return false
	}
	v := p.value()
	if v == nil {
		p.fail("Missing value in dict")
		return false
	}
	if d.Has(k) {
		p.fail("duplicate key")
		return false
	}
	d.Put(k, v)
	return true
}

func (p *parser) object() any {
	p.pop()
	d := New()
	t := p.peek()
	if t == nil {
		p.fail("premature EOI")
		return nil
	}
	if t.typ == tokRCurly {
		p.pop()
		return d
	}
	if !p.pair(d) {
		return nil
	}
	for {
		t = p.pop()
		if t == nil {
			p.fail("premature EOI")
			return nil
		}
		if t.typ == tokRCurly {
			return d
		}
		if t.typ != tokComma {
			p.fail("expected separator in dict")
			return nil
		}
		if !p.pair(d) {
			return nil
		}
	}
}

func (p *parser) array() any {
	p.pop()
	l := &List{}
	t := p.peek()
	if t == nil {
		p.fail("premature EOI")
		return nil
	}
	if t.typ == tokRSquare {
		p.pop()
		return l
	}
	v := p.value()
	if v == nil {
		p.fail("expecting value")
		return nil
	}
	l.Items = append(l.Items, v)
	for {
		t = p.pop()
		if t == nil {
			p.fail("premature EOI")
			return nil
		}
		if t.typ == tokRSquare {
			return l
		}
		if t.typ != tokComma {
			p.fail("expected separator in list")
			return nil
		}
		v := p.value()
		if v == nil {
			p.fail("expecting value")
			return nil
		}
		l.Items = append(l.Items, v)
	}
}

func (p *parser) literal() any {
	t := p.pop()
	switch t.typ {
	case tokString:
		s, ok := p.str(t.s)
		if !ok {
			return nil
		}
		return s
	case tokInteger:
		if v, err := strconv.ParseInt(t.s, 10, 64); err == nil {
			return v
		}
		if t.s[0] != '-' {
			if v, err := strconv.ParseUint(t.s, 10, 64); err == nil {
				return v
			}
		}
	}
	f, _ := strconv.ParseFloat(t.s, 64)
	return f
}

func hex4(s string) int {
	if len(s) < 4 {
		return -1
	}
	v, err := strconv.ParseUint(s[:4], 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}

// str decodes a string token (parse_string).
func (p *parser) str(tok string) (string, bool) {
	quote := tok[0]
	s := tok[1:]
	var b strings.Builder
	for len(s) > 0 && s[0] != quote {
		if s[0] == '\\' {
			beg := s
			c := s[1]
			s = s[2:]
			switch c {
			case '"', '\'', '\\', '/':
				b.WriteByte(c)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				cp := hex4(s)
				s = s[min(4, len(s)):]
				if cp >= 0xD800 && cp <= 0xDBFF && len(s) >= 2 && s[0] == '\\' && s[1] == 'u' {
					cp = 0x10000 + (cp&0x3FF)<<10
					tr := hex4(s[2:])
					if tr >= 0xDC00 && tr <= 0xDFFF {
						cp |= tr & 0x3FF
						s = s[6:]
					} else {
						cp = -1
					}
				}
				if cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF {
					p.fail("%s is not a valid Unicode character", beg[:len(beg)-len(s)])
					return "", false
				}
				if cp == 0 {
					b.WriteString("\xC0\x80") // modified UTF-8
				} else {
					b.WriteRune(rune(cp))
				}
			default:
				p.fail("invalid escape sequence in string")
				return "", false
			}
			continue
		}
		r, n := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && n <= 1 {
			p.fail("invalid UTF-8 sequence in string")
			return "", false
		}
		b.WriteString(s[:n])
		s = s[n:]
	}
	return b.String(), true
}
