package commands

// Table rows of the aio verbs, truncate and reopen (their Run functions
// live in aio.go, truncate.go and reopen.go).
var (
	aioReadCmd = &Command{Name: "aio_read", Opts: "CP:iqv", ArgMin: 2, ArgMax: -1,
		Args: str("[-Ciqv] [-P pattern] off len [len..]"), OneLine: "asynchronously reads a number of bytes",
		Help: `
 asynchronously reads a range of bytes from the given offset

 Example:
 'aio_read -v 512 1k 1k ' - dumps 2 kilobytes read from 512 bytes into the file

 Reads a segment of the currently open file, optionally dumping it to the
 standard output stream (with -v option) for subsequent inspection.
 The read is performed asynchronously and the aio_flush command must be
 used to ensure all outstanding aio requests have been completed.
 Note that due to its asynchronous nature, this command will be
 considered successful once the request is submitted, independently
 of potential I/O errors or pattern mismatches.
 -C, -- report statistics in a machine parsable format
 -P, -- use a pattern to verify read data
 -i, -- treat request as invalid, for exercising stats
 -v, -- dump buffer to standard output
 -q, -- quiet mode, do not show I/O statistics

`}
	aioWriteCmd = &Command{Name: "aio_write", Opts: "CfiqP:uz", ArgMin: 2, ArgMax: -1, Perm: permWrite,
		Args: str("[-Cfiquz] [-P pattern] off len [len..]"), OneLine: "asynchronously writes a number of bytes",
		Help: `
 asynchronously writes a range of bytes from the given offset source
 from multiple buffers

 Example:
 'aio_write 512 1k 1k' - writes 2 kilobytes at 512 bytes into the open file

 Writes into a segment of the currently open file, using a buffer
 filled with a set pattern (0xcdcdcdcd).
 The write is performed asynchronously and the aio_flush command must be
 used to ensure all outstanding aio requests have been completed.
 Note that due to its asynchronous nature, this command will be
 considered successful once the request is submitted, independently
 of potential I/O errors or pattern mismatches.
 -P, -- use different pattern to fill file
 -C, -- report statistics in a machine parsable format
 -f, -- use Force Unit Access semantics
 -i, -- treat request as invalid, for exercising stats
 -q, -- quiet mode, do not show I/O statistics
 -u, -- with -z, allow unmapping
 -z, -- write zeroes using blk_aio_pwrite_zeroes

`}
	aioFlushCmd = &Command{Name: "aio_flush", OneLine: "completes all outstanding aio requests"}
	truncateCmd = &Command{Name: "truncate", Alias: "t", Opts: "m:", ArgMin: 1, ArgMax: 3, Perm: permWrite | permResize,
		Args: str("[-m prealloc_mode] off"), OneLine: "truncates the current file at the given offset"}
	reopenCmd = &Command{Name: "reopen", Opts: "c:o:rw", ArgMin: 0, ArgMax: -1,
		Args: str("[(-r|-w)] [-c cache] [-o options]"), OneLine: "reopens an image with new options",
		Help: `
 Changes the open options of an already opened image

 Example:
 'reopen -o lazy-refcounts=on' - activates lazy refcount writeback on a qcow2 image

 -r, -- Reopen the image read-only
 -w, -- Reopen the image read-write
 -c, -- Change the cache mode to the given value
 -o, -- Changes block driver options (cf. 'open' command)

`}
)

func init() {
	truncateCmd.Run = runTruncate
	register(truncateCmd)
	reopenCmd.Run = runReopen
	register(reopenCmd)
}
