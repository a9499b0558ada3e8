//! A reader of uncompressed tar archives, enough for WebDataset shards: the regular files'
//! names, data offsets and sizes, from one pass over the headers that seeks past the data.
//!
//! Our own rather than the `tar` crate because the dataset scan needs each member's data
//! offset (image ids point into the shard by offset, so decoding is one ranged read) and
//! errors that name the byte at which a damaged shard stops making sense; both are a few
//! lines on top of the header layout, and the format is small.
//!
//! Understood: POSIX ustar (with its name prefix), GNU (`L` long names), pax extended
//! headers (`x`: `path` and `size`; global `g` headers are skipped), octal and base-256
//! sizes. Regular files (`0`, NUL, `7`) are members; directories, links and devices are
//! passed over. The archive ends at the first all-zero block or, as Python's `tarfile`
//! accepts, at the end of the file on a header boundary.

use std::io::{Read, Seek, SeekFrom};

/// The tar block size: headers and data are padded to it.
pub const BLOCK: u64 = 512;

/// A regular file in an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its name (long names and pax paths resolved; not UTF-8 parts replaced by U+FFFD).
    pub name: String,
    /// Byte offset of its data in the archive (its header is the block before).
    pub data: u64,
    /// Bytes of data.
    pub size: u64,
}

/// Where and why an archive stops making sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {problem}")]
pub struct TarError {
    /// Byte offset of the header (or data) at fault.
    pub offset: u64,
    /// What is wrong.
    pub problem: String,
}

fn fail(offset: u64, problem: impl Into<String>) -> TarError {
    TarError {
        offset,
        problem: problem.into(),
    }
}

/// The regular files of the archive in `file` (`len` bytes long), in archive order.
pub fn members(file: &mut (impl Read + Seek), len: u64) -> Result<Vec<Member>, TarError> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    // Set by a GNU long-name or pax header for the entry that follows it.
    let (mut long_name, mut pax_path, mut pax_size): (Option<String>, Option<String>, Option<u64>) =
        (None, None, None);
    loop {
        if offset >= len {
            if offset == len {
                return Ok(out); // Ends on a header boundary without the zero blocks.
            }
            return Err(fail(
                offset,
                "the shard ends inside the padding before this block (a truncated shard)",
            ));
        }
        if len - offset < BLOCK {
            return Err(fail(
                offset,
                format!(
                    "a header is cut off after {} of {BLOCK} bytes (a truncated shard)",
                    len - offset
                ),
            ));
        }
        let mut header = [0u8; BLOCK as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut header))
            .map_err(|e| fail(offset, format!("cannot read a header: {e}")))?;
        if header.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let size = check_header(&header).map_err(|p| fail(offset, p))?;
        let size = pax_size.take().unwrap_or(size);
        let data = offset + BLOCK;
        let name_here = header_name(&header);
        if data.checked_add(size).is_none_or(|end| end > len) {
            return Err(fail(
                offset,
                format!(
                    "{name_here}: {size} bytes of data run past the end of the shard \
                     ({len} bytes; a truncated shard)"
                ),
            ));
        }
        match header[156] {
            b'L' => {
                let bytes = read_at(file, data, size, &name_here)?;
                let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                long_name = Some(String::from_utf8_lossy(&bytes[..end]).into_owned());
            }
            b'x' => {
                let bytes = read_at(file, data, size, &name_here)?;
                let (path, size) = pax_records(&bytes).map_err(|p| fail(offset, p))?;
                pax_path = path.or(pax_path);
                pax_size = size.or(pax_size);
            }
            // Global pax headers and GNU long link names say nothing about the next name.
            b'g' | b'K' => {}
            kind => {
                let name = pax_path.take().or(long_name.take()).unwrap_or(name_here);
                if matches!(kind, b'0' | 0 | b'7') {
                    out.push(Member { name, data, size });
                }
            }
        }
        offset = data + size.div_ceil(BLOCK) * BLOCK;
    }
}

/// The `size` bytes at `data`, the content of the entry named `name`.
fn read_at(
    file: &mut (impl Read + Seek),
    data: u64,
    size: u64,
    name: &str,
) -> Result<Vec<u8>, TarError> {
    let mut bytes = vec![0u8; size as usize];
    file.seek(SeekFrom::Start(data))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| fail(data, format!("cannot read {name}'s data: {e}")))?;
    Ok(bytes)
}

/// Checks a header block's checksum and returns the size it gives; a problem in words.
pub fn check_header(header: &[u8; BLOCK as usize]) -> Result<u64, String> {
    let stored = octal(&header[148..156])
        .ok_or("not a tar header (no checksum; not an uncompressed tar, or damaged)")?;
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in header.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    if stored != unsigned && stored as i64 != signed {
        return Err(
            "header checksum mismatch (not an uncompressed tar, or a damaged shard)".to_string(),
        );
    }
    size_field(&header[124..136]).ok_or_else(|| "unreadable size field in the header".to_string())
}

/// The name a header gives itself (ustar prefix joined), lossily as UTF-8.
fn header_name(header: &[u8; BLOCK as usize]) -> String {
    let field = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let name = field(&header[..100]);
    // POSIX ustar only: GNU headers use these bytes for other fields.
    if &header[257..263] == b"ustar\0" {
        let prefix = field(&header[345..500]);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

/// An octal field (NUL- or space-terminated, leading spaces allowed).
fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return None;
    }
    u64::from_str_radix(text, 8).ok()
}

/// A size field: octal, or GNU base-256 when the high bit of the first byte is set.
fn size_field(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 == 0 {
        return octal(field).or(field.iter().all(|&b| b == 0).then_some(0));
    }
    if field[0] & 0x40 != 0 {
        return None; // negative
    }
    let mut value = u64::from(field[0] & 0x3f);
    for &b in &field[1..] {
        value = value.checked_mul(256)?.checked_add(u64::from(b))?;
    }
    Some(value)
}

/// The `path` and `size` of pax records `"<len> <key>=<value>\n"…`.
fn pax_records(bytes: &[u8]) -> Result<(Option<String>, Option<u64>), String> {
    let (mut path, mut size) = (None, None);
    let mut rest = bytes;
    while !rest.is_empty() && rest[0] != 0 {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("malformed pax header (a record without its length)")?;
        let length: usize = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|t| t.parse().ok())
            .filter(|&n| n > space + 1 && n <= rest.len())
            .ok_or("malformed pax header (a bad record length)")?;
        let record = &rest[space + 1..length - 1]; // without the trailing newline
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            let value = &record[eq + 1..];
            match &record[..eq] {
                b"path" => path = Some(String::from_utf8_lossy(value).into_owned()),
                b"size" => {
                    size = Some(
                        std::str::from_utf8(value)
                            .ok()
                            .and_then(|t| t.parse().ok())
                            .ok_or("malformed pax header (size is not a number)")?,
                    )
                }
                _ => {}
            }
        }
        rest = &rest[length..];
    }
    Ok((path, size))
}

/// Test archives written the way `tarfile` writes them (ustar headers, GNU long names).
#[cfg(test)]
pub(crate) mod write {
    use super::BLOCK;

    /// One ustar header for a regular file (`kind` b'0') or a GNU long name (`kind` b'L').
    pub fn header(name: &str, size: u64, kind: u8) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK as usize];
        h[..name.len().min(100)].copy_from_slice(&name.as_bytes()[..name.len().min(100)]);
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    /// An archive of `(name, data)` files, ending in two zero blocks.
    pub fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in files {
            if name.len() > 100 {
                let long = format!("{name}\0");
                out.extend(header("././@LongLink", long.len() as u64, b'L'));
                push_data(&mut out, long.as_bytes());
            }
            out.extend(header(name, data.len() as u64, b'0'));
            push_data(&mut out, data);
        }
        out.extend([0u8; 2 * BLOCK as usize]);
        out
    }

    fn push_data(out: &mut Vec<u8>, data: &[u8]) {
        out.extend(data);
        let pad = (BLOCK as usize - data.len() % BLOCK as usize) % BLOCK as usize;
        out.extend(vec![0u8; pad]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn list(bytes: &[u8]) -> Result<Vec<Member>, TarError> {
        members(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    #[test]
    fn members_with_offsets_and_long_names() {
        let long = format!("{}/x.jpg", "d".repeat(120));
        let bytes = write::archive(&[("a.jpg", b"JPEG"), (&long, b"xy"), ("a.cls", b"7\n")]);
        let members = list(&bytes).unwrap();
        let names: Vec<_> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a.jpg", long.as_str(), "a.cls"]);
        for m in &members {
            let data = &bytes[m.data as usize..(m.data + m.size) as usize];
            let header: &[u8; 512] = bytes[m.data as usize - 512..m.data as usize]
                .try_into()
                .unwrap();
            assert_eq!(check_header(header), Ok(m.size));
            assert!(matches!(data, b"JPEG" | b"xy" | b"7\n"));
        }
        // Without the zero blocks the end of the file ends the archive.
        assert_eq!(list(&bytes[..bytes.len() - 1024]).unwrap(), members);
    }

    #[test]
    fn pax_paths_and_directories() {
        let mut bytes = write::header("dir/", 0, b'5');
        let record = "21 path=pax/name.png\n";
        bytes.extend(write::header("PaxHeader", record.len() as u64, b'x'));
        bytes.extend(record.as_bytes());
        bytes.extend(vec![0u8; 512 - record.len()]);
        // A global header between the pax header and its entry changes nothing.
        let global = "17 comment=hello\n";
        bytes.extend(write::header("GlobalHead", global.len() as u64, b'g'));
        bytes.extend(global.as_bytes());
        bytes.extend(vec![0u8; 512 - global.len()]);
        bytes.extend(write::archive(&[("short", b"png")]));
        let members = list(&bytes).unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].name, "pax/name.png");
        assert_eq!(members[0].size, 3);
    }

    #[test]
    fn truncated_and_corrupt_archives_name_the_byte() {
        let bytes = write::archive(&[("a.jpg", &[1u8; 1000]), ("b.jpg", b"x")]);
        // Cut inside a.jpg's data.
        let err = list(&bytes[..700]).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(
            err.to_string()
                .contains("a.jpg: 1000 bytes of data run past the end"),
            "{err}"
        );
        // Cut inside b.jpg's header (a.jpg: header + 2 data blocks = 1536).
        let err = list(&bytes[..1536 + 100]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "at byte 1536: a header is cut off after 100 of 512 bytes (a truncated shard)"
        );
        // A flipped byte in b.jpg's header.
        let mut bad = bytes.clone();
        bad[1536 + 3] ^= 0x55;
        let err = list(&bad).unwrap_err();
        assert_eq!(err.offset, 1536);
        assert!(err.problem.contains("checksum mismatch"), "{err}");
        // Not a tar at all (gzip magic).
        let err = list(&[0x1f, 0x8b, 8, 0].repeat(200)).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(err.problem.contains("not an uncompressed tar"), "{err}");
    }

    #[test]
    fn sizes_in_base_256() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[10] = 1;
        field[11] = 2;
        assert_eq!(size_field(&field), Some(258));
        field[0] = 0xc0;
        assert_eq!(size_field(&field), None);
    }
}
