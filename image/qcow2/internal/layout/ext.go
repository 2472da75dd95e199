package layout

import "errors"

// Header extension types.
const (
	ExtEnd           = 0x00000000
	ExtBackingFormat = 0xe2792aca
	ExtFeatureTable  = 0x6803f857
	ExtBitmaps       = 0x23852875
	ExtCryptoHeader  = 0x0537be77
	ExtDataFile      = 0x44415441
)

// Extension is a header extension: its type and data (without padding).
type Extension struct {
	Type uint32
	Data []byte
}

// ErrExtensionTooLarge is QEMU's message for an extension (or its 8-byte
// header) that does not fit in the extension area.
var ErrExtensionTooLarge = errors.New("Header extension too large")

// WalkExtensions calls fn for each extension of the extension area b (from
// the end of the header to the backing file name or the end of the first
// cluster) in file order, up to the end marker or the end of b, as QEMU's
// qcow2_read_extensions walks them. data aliases b. It stops at fn's first
// error and returns it, or ErrExtensionTooLarge at an extension that does
// not fit (after calling fn for those before it).
func WalkExtensions(b []byte, fn func(typ uint32, data []byte) error) error {
	off := 0
	for off < len(b) {
		if off+8 > len(b) {
			// QEMU reads the extension header past the end, then refuses it
			return ErrExtensionTooLarge
		}
		typ := be.Uint32(b[off:])
		n := int64(be.Uint32(b[off+4:]))
		off += 8
		if n > int64(len(b)-off) {
			return ErrExtensionTooLarge
		}
		if typ == ExtEnd {
			return nil
		}
		if err := fn(typ, b[off:off+int(n)]); err != nil {
			return err
		}
		off += int(n+7) &^ 7
	}
	return nil
}

// ParseExtensions is the list of extensions of the area b (their data
// copied), and WalkExtensions' error.
func ParseExtensions(b []byte) ([]Extension, error) {
	var out []Extension
	err := WalkExtensions(b, func(typ uint32, data []byte) error {
		out = append(out, Extension{typ, append([]byte(nil), data...)})
		return nil
	})
	return out, err
}

// ExtensionLen is the bytes an extension with n bytes of data takes: the
// 8-byte header and the data padded to 8 bytes.
func ExtensionLen(n int) int { return 8 + (n+7)&^7 }

// PutExtension writes the extension (typ, data) at b[pos:] (zero padding
// included when b is zeroed) and returns the position after it, or false
// when it does not fit in b.
func PutExtension(b []byte, pos int, typ uint32, data []byte) (int, bool) {
	n := ExtensionLen(len(data))
	if pos < 0 || pos+n > len(b) {
		return pos, false
	}
	be.PutUint32(b[pos:], typ)
	be.PutUint32(b[pos+4:], uint32(len(data)))
	copy(b[pos+8:], data)
	return pos + n, true
}

// EncodeExtensions is the extension area of the list, with the end marker.
func EncodeExtensions(list []Extension) []byte {
	n := 8
	for _, e := range list {
		n += ExtensionLen(len(e.Data))
	}
	b := make([]byte, n)
	pos := 0
	for _, e := range list {
		pos, _ = PutExtension(b, pos, e.Type, e.Data)
	}
	PutExtension(b, pos, ExtEnd, nil)
	return b
}

// Feature is an entry of the feature name table.
type Feature struct {
	Type uint8 // 0 incompatible, 1 compatible, 2 autoclear
	Bit  uint8
	Name string
}

// featureLen is the size of a feature name table entry (46 bytes of name).
const featureLen = 48

// QemuFeatures is the feature name table QEMU 7.2 writes.
var QemuFeatures = []Feature{
	{0, 0, "dirty bit"},
	{0, 1, "corrupt bit"},
	{0, 2, "external data file"},
	{0, 3, "compression type"},
	{0, 4, "extended L2 entries"},
	{1, 0, "lazy refcounts"},
	{2, 0, "bitmaps"},
	{2, 1, "raw external data"},
}

// EncodeFeatures is the feature name table extension's data for fs.
func EncodeFeatures(fs []Feature) []byte {
	b := make([]byte, featureLen*len(fs))
	for i, f := range fs {
		b[featureLen*i] = f.Type
		b[featureLen*i+1] = f.Bit
		copy(b[featureLen*i+2:featureLen*i+featureLen], f.Name)
	}
	return b
}

// DecodeFeatures is the feature name table in b, as QEMU reads it: into a
// zeroed buffer (a short last entry is zero-padded), up to the first entry
// with an empty name.
func DecodeFeatures(b []byte) []Feature {
	if r := len(b) % featureLen; r != 0 {
		b = append(append([]byte(nil), b...), make([]byte, featureLen-r)...)
	}
	var fs []Feature
	for len(b) >= featureLen && b[2] != 0 {
		name := b[2:featureLen]
		n := 0
		for n < len(name) && name[n] != 0 {
			n++
		}
		fs = append(fs, Feature{b[0], b[1], string(name[:n])})
		b = b[featureLen:]
	}
	return fs
}

// BitmapsExtLen is the size of the bitmaps extension's data.
const BitmapsExtLen = 24

// BitmapsExt is the bitmaps extension's data.
type BitmapsExt struct {
	NbBitmaps uint32
	Reserved  uint32 // must be zero
	DirSize   uint64
	DirOffset uint64
}

// DecodeBitmapsExt decodes the bitmaps extension's data; false when it is
// not BitmapsExtLen bytes.
func DecodeBitmapsExt(b []byte) (BitmapsExt, bool) {
	if len(b) != BitmapsExtLen {
		return BitmapsExt{}, false
	}
	return BitmapsExt{be.Uint32(b[0:]), be.Uint32(b[4:]), be.Uint64(b[8:]), be.Uint64(b[16:])}, true
}

// Encode is the extension's data.
func (e BitmapsExt) Encode() []byte {
	b := make([]byte, BitmapsExtLen)
	be.PutUint32(b[0:], e.NbBitmaps)
	be.PutUint32(b[4:], e.Reserved)
	be.PutUint64(b[8:], e.DirSize)
	be.PutUint64(b[16:], e.DirOffset)
	return b
}

// CryptoExtLen is the size of the crypto header extension's data.
const CryptoExtLen = 16

// CryptoExt is the crypto header extension's data: where the LUKS header
// lies in the image file.
type CryptoExt struct{ Offset, Length uint64 }

// DecodeCryptoExt decodes the crypto header extension's data; false when
// it is not CryptoExtLen bytes.
func DecodeCryptoExt(b []byte) (CryptoExt, bool) {
	if len(b) != CryptoExtLen {
		return CryptoExt{}, false
	}
	return CryptoExt{be.Uint64(b[0:]), be.Uint64(b[8:])}, true
}

// Encode is the extension's data.
func (e CryptoExt) Encode() []byte {
	b := make([]byte, CryptoExtLen)
	be.PutUint64(b[0:], e.Offset)
	be.PutUint64(b[8:], e.Length)
	return b
}
