//! Who may read what the administrator keeps on disk: the data directory is created private
//! (0700), and a data directory or a config with plaintext tokens that others can read is
//! warned about at start.

use std::io;
use std::path::Path;

use crate::config::Config;

/// The mode of a directory the administrator creates for its data: the inventory of every
/// member account is nobody else's business.
pub const DATA_DIR_MODE: u32 = 0o700;

/// The permission bits that let the group or others in.
const GROUP_OR_OTHERS: u32 = 0o077;

/// Creates `path` (and missing parents) with [`DATA_DIR_MODE`]; an existing directory is left
/// as it is.
pub fn create_data_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DATA_DIR_MODE);
    builder.create(path)
}

/// The permission bits of `path` when the group or others may access it.
fn open_to_others(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & GROUP_OR_OTHERS != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The data directory's mode when the group or others may access it.
pub fn data_dir_exposure(path: &Path) -> Option<u32> {
    open_to_others(path)
}

/// The config file's mode when it holds plaintext tokens and the group or others may read it.
pub fn config_exposure(path: &Path, config: &Config) -> Option<u32> {
    if !config.has_plaintext_tokens() {
        return None;
    }
    open_to_others(path).filter(|mode| mode & 0o044 != 0)
}

/// One warning when the data directory is open to others.
pub fn warn_if_data_dir_open(path: &Path) {
    if let Some(mode) = data_dir_exposure(path) {
        tracing::warn!(
            data_dir = %path.display(),
            mode = %format!("{mode:03o}"),
            "the data directory is accessible by group or others; it holds every member's inventory: chmod 700 it"
        );
    }
}

/// One warning when the config holds plaintext tokens that others can read.
pub fn warn_if_config_readable(path: &Path, config: &Config) {
    if let Some(mode) = config_exposure(path, config) {
        tracing::warn!(
            config = %path.display(),
            mode = %format!("{mode:03o}"),
            "the config holds plaintext tokens and is readable by group or others: chmod 600 it, or give \
             `token_sha256` instead of `token`"
        );
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_data_directory_is_created_private_and_an_open_one_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/b/data");
        create_data_dir(&data).unwrap();
        assert_eq!(mode(&data), DATA_DIR_MODE);
        assert_eq!(data_dir_exposure(&data), None);
        // An existing directory is not changed, but noticed.
        chmod(&data, 0o755);
        create_data_dir(&data).unwrap();
        assert_eq!(data_dir_exposure(&data), Some(0o755));
        chmod(&data, 0o750);
        assert_eq!(data_dir_exposure(&data), Some(0o750));
    }

    #[test]
    fn a_config_with_plaintext_tokens_that_others_can_read_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("estate.toml");
        let plaintext =
            "version = 1\n[[clients]]\nname = \"ops\"\nrole = \"operator\"\ntoken = \"0123456789abcdef0\"\n";
        std::fs::write(&file, plaintext).unwrap();
        let config = Config::parse(plaintext).unwrap();
        chmod(&file, 0o644);
        assert_eq!(config_exposure(&file, &config), Some(0o644));
        chmod(&file, 0o640);
        assert_eq!(config_exposure(&file, &config), Some(0o640));
        chmod(&file, 0o600);
        assert_eq!(config_exposure(&file, &config), None);
        // Digests are no secret: readable is fine.
        let digests = plaintext.replace(
            "token = \"0123456789abcdef0\"",
            "token_sha256 = \"5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\"",
        );
        chmod(&file, 0o644);
        assert_eq!(config_exposure(&file, &Config::parse(&digests).unwrap()), None);
    }
}
