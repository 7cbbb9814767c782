//! What a model cache compares to notice that a file changed: size, inode
//! and the modification and change times to the nanosecond. Erlang's
//! `file:read_file_info/2` gives times in whole seconds, so a rewrite in
//! place that kept the size within one second went unseen.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A regular file's identity and times, as of one `stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileStamp {
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the Unix epoch.
    pub ctime_ns: i128,
    pub inode: u64,
}

/// The stamp of the regular file at `path` (following symlinks), or `None`
/// when there is none: missing, unreadable, or not a regular file.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let ns = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    Some(FileStamp {
        size: meta.size(),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        inode: meta.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::{Seek, SeekFrom, Write};

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tb-stamp-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_same_size_rewrite_in_place_changes_the_stamp() {
        let dir = scratch("rewrite");
        let path = dir.join("model.onnx");
        fs::write(&path, b"first version").unwrap();
        let before = file_stamp(&path).unwrap();
        // Well inside one second, the granularity that missed this before.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.write_all(b"other version").unwrap();
        drop(file);
        let after = file_stamp(&path).unwrap();
        assert_eq!(before.size, after.size);
        assert_eq!(before.inode, after.inode);
        assert_ne!(before, after);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_files_and_directories_have_no_stamp() {
        let dir = scratch("kinds");
        assert_eq!(file_stamp(&dir), None);
        assert_eq!(file_stamp(&dir.join("missing.onnx")), None);
        fs::remove_dir_all(dir).unwrap();
    }
}
