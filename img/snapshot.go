package img

import (
	"errors"
	"strings"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
)

// SnapshotParam is a parsed -l argument of qemu-img convert and
// measure and of qemu-nbd: "snapshot.id=ID,snapshot.name=NAME" (either
// may be left out) or an ID or name.
type SnapshotParam struct {
	given    bool
	opts     bool    // the snapshot.* form
	id, name *string // nil: not given (QEMU's NULL); "" is given and empty
	idOrName string
}

// ParseSnapshotParam parses -l. The error is the option parser's
// ("Invalid parameter 'snapshot.x'"); each program adds its own line.
// warn, when not nil, gets the parser's warnings (a short-form boolean).
func ParseSnapshotParam(s string, warn func(string)) (SnapshotParam, error) {
	if !strings.HasPrefix(s, "snapshot.") {
		return SnapshotParam{given: true, idOrName: s}, nil
	}
	p := SnapshotParam{given: true, opts: true}
	pairs, err := commands.ParseOptionList(s, "", warn)
	if err != nil {
		return p, err
	}
	for _, kv := range pairs {
		v := kv[1]
		switch kv[0] {
		case "snapshot.id":
			p.id = &v
		case "snapshot.name":
			p.name = &v
		default:
			return p, errorf(ErrInvalidOptions, "Invalid parameter '%s'", kv[0])
		}
	}
	return p, nil
}

// parseSnapshotParam is qemu-img's -l ("" when not given).
func parseSnapshotParam(s string, warn func(string)) (SnapshotParam, error) {
	if s == "" {
		return SnapshotParam{}, nil
	}
	p, err := ParseSnapshotParam(s, warn)
	if err != nil {
		return p, &Error{Msg: err.Error(), Hint: "", Err: wrapErr{ErrInvalidOptions, err},
			more: "Failed in parsing snapshot param '" + s + "'"}
	}
	return p, nil
}

// Load is bdrv_snapshot_load_tmp (or its _by_id_or_name form) on n: the
// read-only image reads the snapshot until it is closed.
func (p SnapshotParam) Load(n *formats.Node) error {
	d, ok := image.SkipFilters(n.Disk).Driver().(*qcow2.Driver)
	if !ok {
		return errorf(image.ErrNotSupported, "Failed to load snapshot: Block format '%s' used by device '' does not support temporarily loading internal snapshots", n.Drv.Name)
	}
	var err error
	if p.opts {
		if p.id == nil && p.name == nil {
			err = errors.New("snapshot_id and name are both NULL")
		} else {
			err = d.LoadSnapshotTmp(p.id, p.name)
		}
	} else {
		err = d.LoadSnapshotTmp(&p.idOrName, nil)
		if err != nil {
			err = d.LoadSnapshotTmp(nil, &p.idOrName)
		}
	}
	if err != nil {
		return errorf(err, "Failed to load snapshot: %v", err)
	}
	return nil
}
