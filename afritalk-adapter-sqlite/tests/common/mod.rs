//! What the SQLite adapter's test files share: a temporary database file.

use std::path::PathBuf;

/// A temporary database file, removed (with its WAL files) on drop.
pub struct TempDb(pub PathBuf);

impl TempDb {
    /// A new file name under the system's temporary directory.
    pub fn new() -> Self {
        Self(
            std::env::temp_dir()
                .join("afritalk-sqlite-tests")
                .join(format!("{}.db", uuid::Uuid::new_v4().simple())),
        )
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = self.0.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }
}
