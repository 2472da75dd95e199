package img

import (
	"errors"
	"strings"

	"github.com/goqio/goqio/commands"
	"github.com/goqio/goqio/image"
	"github.com/goqio/goqio/image/formats"
	"github.com/goqio/goqio/image/qcow2"
)

// snapshotParam is -l: "snapshot.id=ID,snapshot.name=NAME" or an ID or
// name.
type snapshotParam struct {
	given    bool
	opts     bool // the snapshot.* form
	id, name string
	idOrName string
}

// parseSnapshotParam parses -l as qemu-img's getopt loop does.
func parseSnapshotParam(s string) (snapshotParam, error) {
	if s == "" {
		return snapshotParam{}, nil
	}
	if !strings.HasPrefix(s, "snapshot.") {
		return snapshotParam{given: true, idOrName: s}, nil
	}
	p := snapshotParam{given: true, opts: true}
	pairs, err := commands.ParseOptionList(s, "", nil)
	if err == nil {
		for _, kv := range pairs {
			switch kv[0] {
			case "snapshot.id":
				p.id = kv[1]
			case "snapshot.name":
				p.name = kv[1]
			default:
				err = errorf(ErrInvalidOptions, "Invalid parameter '%s'", kv[0])
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		return p, &Error{Msg: err.Error(), Hint: "", Err: wrapErr{ErrInvalidOptions, err},
			more: "Failed in parsing snapshot param '" + s + "'"}
	}
	return p, nil
}

// load is bdrv_snapshot_load_tmp (or its _by_id_or_name form) on n.
func (p snapshotParam) load(n *formats.Node) error {
	d, ok := image.SkipFilters(n.Disk).Driver().(*qcow2.Driver)
	if !ok {
		return errorf(image.ErrNotSupported, "Failed to load snapshot: Block format '%s' used by device '' does not support temporarily loading internal snapshots", n.Drv.Name)
	}
	var err error
	if p.opts {
		if p.id == "" && p.name == "" {
			err = errors.New("snapshot_id and name are both NULL")
		} else {
			err = d.LoadSnapshotTmp(p.id, p.name)
		}
	} else {
		err = d.LoadSnapshotTmp(p.idOrName, "")
		if err != nil {
			err = d.LoadSnapshotTmp("", p.idOrName)
		}
	}
	if err != nil {
		return errorf(err, "Failed to load snapshot: %v", err)
	}
	return nil
}
