//! Modes of the files that hold user names and addresses (the database, the journal,
//! `auth.log`, the NPS log files): the owner's alone, or the owner's and readable by
//! the group when `storage.group_readable` asks (a log shipper in that group). Secrets
//! (`users.db`, `mfa.db`, keys) are always the owner's alone.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Who may read a data file besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileMode {
    group_readable: bool,
}

impl FileMode {
    /// Owner only: files 0600, directories 0700.
    pub const PRIVATE: Self = Self { group_readable: false };
    /// Owner, and the group may read: files 0640, directories 0750.
    pub const GROUP_READABLE: Self = Self { group_readable: true };

    pub fn new(group_readable: bool) -> Self {
        Self { group_readable }
    }

    /// The permission bits of a file.
    pub fn file_bits(self) -> u32 {
        if self.group_readable { 0o640 } else { 0o600 }
    }

    /// The permission bits of a directory.
    pub fn dir_bits(self) -> u32 {
        if self.group_readable { 0o750 } else { 0o700 }
    }

    /// Opens `path` for appending (and reading), creating it with this mode. A file
    /// that exists is given this mode too, so a file created by an older version, or
    /// under another setting, does not stay wider.
    pub fn open_append(self, path: &Path) -> io::Result<File> {
        let mut options = OpenOptions::new();
        options.create(true).read(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, self.file_bits());
        let file = options.open(path)?;
        self.apply_to(&file)?;
        Ok(file)
    }

    /// Creates `path` empty with this mode if it does not exist; gives it this mode
    /// either way.
    pub fn ensure(self, path: &Path) -> io::Result<()> {
        self.open_append(path).map(drop)
    }

    /// Gives `path` this mode if it exists.
    pub fn restrict(self, path: &Path) -> io::Result<()> {
        match File::open(path) {
            Ok(f) => self.apply_to(&f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    #[cfg(unix)]
    fn apply_to(self, file: &File) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let bits = self.file_bits();
        if file.metadata()?.permissions().mode() & 0o777 != bits {
            file.set_permissions(std::fs::Permissions::from_mode(bits))?;
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn apply_to(self, _: &File) -> io::Result<()> {
        Ok(())
    }

    /// Creates `dir` and its missing parents; the directories it creates get this
    /// mode's directory bits (existing ones are left as they are).
    pub fn create_dir_all(self, dir: &Path) -> io::Result<()> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, self.dir_bits());
        builder.create(dir)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_created_and_narrowed_to_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.log");
        FileMode::PRIVATE.open_append(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        FileMode::GROUP_READABLE.ensure(&path).unwrap();
        assert_eq!(mode(&path), 0o640);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        FileMode::PRIVATE.restrict(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        FileMode::PRIVATE.restrict(&dir.path().join("missing")).unwrap();
        let nested = dir.path().join("a/b");
        FileMode::GROUP_READABLE.create_dir_all(&nested).unwrap();
        assert_eq!((mode(&nested), mode(&dir.path().join("a"))), (0o750, 0o750));
    }
}
