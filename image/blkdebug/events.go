// Package blkdebug is QEMU's blkdebug filter driver: a node that passes
// every request to its image, signals the debug events the drivers above it
// emit, injects errors into the requests that follow an event, changes a
// state machine on events, and suspends requests at breakpoints (qemu-io's
// break, wait_break, resume and remove_break).
package blkdebug

// Events are QEMU 7.2's BlkdebugEvent names, in enum order.
var Events = []string{
	"l1_update", "l1_grow_alloc_table", "l1_grow_write_table",
	"l1_grow_activate_table", "l2_load", "l2_update",
	"l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write",
	"read_aio", "read_backing_aio", "read_compressed", "write_aio",
	"write_compressed", "vmstate_load", "vmstate_save", "cow_read",
	"cow_write", "reftable_load", "reftable_grow", "reftable_update",
	"refblock_load", "refblock_update", "refblock_update_part",
	"refblock_alloc", "refblock_alloc_hookup", "refblock_alloc_write",
	"refblock_alloc_write_blocks", "refblock_alloc_write_table",
	"refblock_alloc_switch_table", "cluster_alloc",
	"cluster_alloc_bytes", "cluster_free", "flush_to_os",
	"flush_to_disk", "pwritev_rmw_head", "pwritev_rmw_after_head",
	"pwritev_rmw_tail", "pwritev_rmw_after_tail", "pwritev",
	"pwritev_zero", "pwritev_done", "empty_image_prepare",
	"l1_shrink_write_table", "l1_shrink_free_l2_clusters",
	"cor_write", "cluster_alloc_space", "none",
}

// EventIndex is the enum value of an event name, or -1.
func EventIndex(name string) int {
	for i, e := range Events {
		if e == name {
			return i
		}
	}
	return -1
}

// IOTypes are QEMU's BlkdebugIOType names, in enum order.
var IOTypes = []string{"read", "write", "write-zeroes", "discard", "flush", "block-status"}

const (
	ioRead = iota
	ioWrite
	ioWriteZeroes
	ioDiscard
	ioFlush
	ioBlockStatus
)
