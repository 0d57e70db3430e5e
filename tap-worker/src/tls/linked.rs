//! OpenSSL linked into an executable rather than loaded as `libssl.so`
//! (Node.js, programs built with `libssl.a`, BoringSSL in Envoy): such a
//! process maps no TLS library, so discovery asks its executable.
//!
//! An executable that defines `SSL_read` or `SSL_write` (in `.dynsym`, as
//! Node.js exports them for its addons, or in `.symtab`) is hooked as a
//! library is: the probes find the functions by the same names. One that
//! does not, yet carries OpenSSL's or BoringSSL's own texts and imports
//! neither function from a shared libssl, has the library linked in and
//! stripped: nothing can be hooked, and the status says so.

use memchr::memmem;
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use std::path::Path;

/// What an executable has of OpenSSL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkedIn {
    /// `SSL_read`/`SSL_write` are defined in it: hooked as a library is.
    Hookable,
    /// The library is linked in (its texts are there), its symbols
    /// stripped: nothing to hook. The library's name.
    Stripped(&'static str),
}

/// Texts that betray a linked-in TLS library: the source file names its
/// error reports carry (`../ssl/statem/statem_clnt.c` in OpenSSL 1.1 and
/// 3; BoringSSL's handshake file), which its read and write functions bring
/// into any program that calls them, where version strings may be left out.
const MARKERS: [(&str, &str); 2] = [
    ("ssl/statem/", "OpenSSL"),
    ("ssl/handshake_client.cc", "BoringSSL"),
];

/// Read-only data searched for [`MARKERS`] at most: the texts are in the
/// library's own constants, and a larger section is not read whole.
const MAX_RODATA: u64 = 256 << 20;

const FUNCTIONS: [&str; 2] = ["SSL_read", "SSL_write"];

/// What `path` (an executable, read lazily) has of OpenSSL linked in:
/// `None` for a file that is not ELF, uses a shared libssl, or has none.
pub fn linked_in(path: &Path) -> std::io::Result<Option<LinkedIn>> {
    let file = std::fs::File::open(path)?;
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return Ok(None);
    };
    let mut imports = false;
    for s in elf.dynamic_symbols().chain(elf.symbols()) {
        if !s.name().is_ok_and(|n| FUNCTIONS.contains(&n)) {
            continue;
        }
        if s.is_definition() {
            return Ok(Some(LinkedIn::Hookable));
        }
        imports |= s.is_undefined();
    }
    if imports {
        // A shared libssl's user: discovery finds the library in its map.
        return Ok(None);
    }
    let Some(rodata) = elf.section_by_name(".rodata") else {
        return Ok(None);
    };
    if rodata.size() > MAX_RODATA {
        return Ok(None);
    }
    let Ok(data) = rodata.data() else {
        return Ok(None);
    };
    Ok(MARKERS
        .iter()
        .find(|(marker, _)| memmem::find(data, marker.as_bytes()).is_some())
        .map(|(_, name)| LinkedIn::Stripped(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_openssl_linked_in_are_none() {
        let dir = testkit::TempDir::new("linked");
        let text = dir.root().join("text");
        std::fs::write(&text, "OpenSSL 3.0 but no ELF").unwrap();
        assert_eq!(linked_in(&text).unwrap(), None);
        // A shared libssl's user (curl, when built that way) or a program
        // without TLS.
        for exe in ["/bin/true", "/bin/sh"] {
            assert_eq!(linked_in(Path::new(exe)).unwrap(), None, "{exe}");
        }
        assert!(linked_in(&dir.root().join("missing")).is_err());
    }
}
