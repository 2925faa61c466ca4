//! A real, tiny image layer: a ustar archive holding one file, gzip-compressed.
//!
//! Written by hand (stored deflate blocks, no compression) so the test bed needs no archive crates;
//! any registry client or `tar -xz` reads it.

/// A layer's compressed bytes (the blob) and the digest of its uncompressed tar (the config's DiffID).
pub struct Layer {
    pub gzip: Vec<u8>,
    pub diff_id: String,
}

/// Builds a layer holding `path` with `contents`.
pub fn layer(path: &str, contents: &[u8]) -> Layer {
    let tar = tar_with_one_file(path, contents);
    Layer {
        diff_id: super::images::sha256_digest(&tar),
        gzip: gzip_stored(&tar),
    }
}

fn tar_with_one_file(path: &str, contents: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let name = path.as_bytes();
    header[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    put_octal(&mut header[100..108], 0o644);
    put_octal(&mut header[108..116], 0);
    put_octal(&mut header[116..124], 0);
    put_octal(&mut header[124..136], contents.len() as u64);
    put_octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());

    let mut tar = header.to_vec();
    tar.extend_from_slice(contents);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    // Two zero records mark the end of the archive.
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// Writes `value` as zero-padded octal with a trailing NUL, the tar numeric field format.
fn put_octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

fn gzip_stored(data: &[u8]) -> Vec<u8> {
    // Header: magic, deflate, no flags, mtime 0 (reproducible digests), unknown OS.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        let last = u8::from(chunks.peek().is_none());
        let len = chunk.len() as u16;
        out.push(last);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_reference_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn tar_is_record_aligned_and_ends_with_two_zero_records() {
        let tar = tar_with_one_file("a.txt", b"hello");
        assert_eq!(tar.len(), 512 + 512 + 1024);
        assert!(tar[1024..].iter().all(|&b| b == 0));
    }
}
