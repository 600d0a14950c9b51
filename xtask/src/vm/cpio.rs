//! A minimal writer for the initramfs format the kernel unpacks: cpio
//! "newc" (`070701`), gzip-compressed.
//!
//! Writing the archive ourselves lets it hold `/dev/console` without
//! `mknod` on the host, and makes every entry root-owned whoever builds it.
//! The format is in the kernel's
//! `Documentation/driver-api/early-userspace/buffer-format.rst`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use flate2::{write::GzEncoder, Compression};

use crate::util::Result;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// An archive being built in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl Archive {
    /// A directory (parents are not created implicitly: add them first).
    pub fn dir(&mut self, path: &str) {
        self.entry(path, S_IFDIR | 0o755, (0, 0), &[]);
    }

    /// A regular file with the given permission bits.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        self.entry(path, S_IFREG | mode, (0, 0), data);
    }

    /// A regular file copied from the host.
    pub fn copy(&mut self, path: &str, mode: u32, src: &Path) -> Result {
        let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
        self.file(path, mode, &data);
        Ok(())
    }

    /// A character device node.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.entry(path, S_IFCHR | mode, (major, minor), &[]);
    }

    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let name_size = path.len() + 1;
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            if mode & S_IFDIR == S_IFDIR { 2 } else { 1 },
            0, // mtime: reproducible archives
            data.len() as u32,
            0, // major and minor of the device holding the file
            0,
            rdev.0,
            rdev.1,
            name_size as u32,
            0, // check: unused by newc
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    /// Pads to the 4-byte boundary that headers and data start on.
    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// Ends the archive and writes it gzip-compressed to `out` (fast
    /// compression: the kernel unpacks it once, and boots dominate).
    pub fn write_gzip(mut self, out: &Path) -> Result {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
        let mut gz = GzEncoder::new(BufWriter::new(file), Compression::fast());
        gz.write_all(&self.bytes)
            .and_then(|()| gz.finish()?.flush())
            .with_context(|| format!("writing {}", out.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_headers_padded_to_four_bytes() {
        let mut archive = Archive::default();
        archive.file("init", 0o755, b"hello");
        let bytes = &archive.bytes;
        assert_eq!(&bytes[..6], b"070701");
        let field = |i: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap(),
                16,
            )
            .unwrap()
        };
        assert_eq!(field(1), S_IFREG | 0o755);
        assert_eq!(field(6), 5, "file size");
        assert_eq!(field(11), 5, "name size with its NUL");
        // 110-byte header + "init\0" = 115, padded to 116; then the data.
        assert_eq!(&bytes[110..115], b"init\0");
        assert_eq!(&bytes[116..121], b"hello");
        assert_eq!(bytes.len(), 124);
    }

    #[test]
    fn device_nodes_carry_their_numbers() {
        let mut archive = Archive::default();
        archive.char_device("dev/console", 0o600, 5, 1);
        let text = std::str::from_utf8(&archive.bytes[..110]).unwrap();
        assert_eq!(&text[6 + 8 * 9..6 + 8 * 11], "0000000500000001");
    }
}
