//! The NIF behind `Thunderbolt.ModelServer`'s change check.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustler::Binary;

/// `{size, mtime_ns, ctime_ns, inode}` of the regular file at `path`, or
/// `nil`. A `stat` can block on a slow file system, hence a dirty I/O
/// scheduler, as Erlang's own file calls use.
#[rustler::nif(schedule = "DirtyIo")]
fn file_stamp(path: Binary<'_>) -> Option<(u64, i128, i128, u64)> {
    let path = Path::new(OsStr::from_bytes(path.as_slice()));
    thunderbolt_runtime::file_stamp(path).map(|s| (s.size, s.mtime_ns, s.ctime_ns, s.inode))
}
