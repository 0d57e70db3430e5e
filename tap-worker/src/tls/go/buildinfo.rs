//! The Go version a binary was built with, from its build info (the
//! `.go.buildinfo` section, as `go version FILE` reads it): a 32-byte
//! header (`\xff Go buildinf:`, pointer size, flags), then since Go 1.18
//! the version as a varint-length string right after it; before, a pointer
//! to a Go string header (pointer, length) in the binary's data.

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER: usize = 32;
/// Flags: the pointers are big-endian; the strings are inline (1.18+).
const BIG_ENDIAN: u8 = 1;
const INLINE: u8 = 2;
/// A version string longer than this is no version.
const MAX_VERSION: u64 = 64;

/// The version ("go1.19.8"), or `None` when `info` is no build info.
/// `read(address, len)` reads the binary's memory image, for the older
/// pointer form.
pub fn version(info: &[u8], read: impl Fn(u64, u64) -> Option<Vec<u8>>) -> Option<String> {
    if !info.starts_with(MAGIC) {
        return None;
    }
    let ptr_size = usize::from(*info.get(14)?);
    let flags = *info.get(15)?;
    let bytes = if flags & INLINE != 0 {
        let (len, n) = varint(info.get(HEADER..)?)?;
        if len > MAX_VERSION {
            return None;
        }
        info.get(HEADER + n..HEADER + n + len as usize)?.to_vec()
    } else {
        let word = |b: &[u8]| -> Option<u64> {
            let b = b.get(..ptr_size)?;
            let mut w = [0u8; 8];
            if flags & BIG_ENDIAN != 0 {
                w[8 - ptr_size..].copy_from_slice(b);
                Some(u64::from_be_bytes(w))
            } else {
                w[..ptr_size].copy_from_slice(b);
                Some(u64::from_le_bytes(w))
            }
        };
        if ptr_size != 4 && ptr_size != 8 {
            return None;
        }
        let header = word(info.get(16..)?)?;
        let string = read(header, 2 * ptr_size as u64)?;
        let (at, len) = (word(&string)?, word(string.get(ptr_size..)?)?);
        if len > MAX_VERSION {
            return None;
        }
        read(at, len)?
    };
    let v = String::from_utf8(bytes).ok()?;
    v.starts_with("go").then_some(v)
}

/// An unsigned LEB128 varint (Go's `binary.Uvarint`) and its length.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(flags: u8) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend([8, flags]);
        b.resize(HEADER, 0);
        b
    }

    #[test]
    fn inline_versions_are_read() {
        let mut b = header(INLINE);
        b.push(8);
        b.extend(b"go1.19.8");
        b.extend([0x80, 0x01]);
        assert_eq!(version(&b, |_, _| None).as_deref(), Some("go1.19.8"));
        // Cut short, or not a Go version.
        assert_eq!(version(&b[..HEADER + 4], |_, _| None), None);
        let mut odd = header(INLINE);
        odd.push(3);
        odd.extend(b"xyz");
        assert_eq!(version(&odd, |_, _| None), None);
        assert_eq!(version(b"\x7fELF", |_, _| None), None);
    }

    #[test]
    fn pointer_versions_are_read_through_the_image() {
        // Go 1.17: a pointer to a string header at 0x1000, whose data is at
        // 0x2000.
        let mut b = header(0);
        b[16..24].copy_from_slice(&0x1000u64.to_le_bytes());
        let read = |addr: u64, len: u64| match (addr, len) {
            (0x1000, 16) => {
                let mut s = 0x2000u64.to_le_bytes().to_vec();
                s.extend(9u64.to_le_bytes());
                Some(s)
            }
            (0x2000, 9) => Some(b"go1.17.13".to_vec()),
            _ => None,
        };
        assert_eq!(version(&b, read).as_deref(), Some("go1.17.13"));
        assert_eq!(version(&b, |_, _| None), None);
    }
}
