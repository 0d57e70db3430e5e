//! Go binaries that use crypto/tls: what it takes to hook them, read from
//! the executable file alone (amd64, Go 1.17 and later: the register ABI).
//!
//! [`inspect`] reads an ELF file lazily (only the sections it needs) and
//! says whether it is a Go binary with `crypto/tls.(*Conn).Write` and
//! `Read`, and if so:
//!
//! - its Go version, from the build info (`.go.buildinfo`, [`buildinfo`]);
//! - each function's entry and the file offset of each of its `ret`
//!   instructions, found by disassembling it with `iced-x86` (the kernel
//!   programs read the result at each `ret`: uretprobes would crash Go);
//!   the functions from `.symtab`, or in a stripped binary (`-ldflags=-s
//!   -w`) from the runtime's own function table (`.gopclntab`,
//!   [`pclntab`]);
//! - where a `*tls.Conn` keeps its socket number ([`GoOffsets`]): from the
//!   binary's DWARF when it has it ([`dwarf`]), else from a table per Go
//!   version ([`table_offsets`]); a version outside the table is an error
//!   that says so, never a guess.
//!
//! A file that is no Go binary, or one without crypto/tls, is `Ok(None)`;
//! a Go binary with crypto/tls that cannot be hooked is an error whose text
//! is the reason the TLS status shows.

pub mod buildinfo;
pub mod dwarf;
pub mod pclntab;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
use std::path::Path;
pub use tap_ebpf_common::GoOffsets;

/// The functions hooked in a Go binary, in this order.
pub const FUNCTIONS: [&str; 2] = ["crypto/tls.(*Conn).Write", "crypto/tls.(*Conn).Read"];

/// Instructions decoded per function at most (crypto/tls's are a few
/// hundred): a bound on a corrupt function table.
const MAX_FUNCTION_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GoError {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("a {0} binary: only amd64 Go binaries are hooked")]
    Arch(String),
    #[error("Go {0}: before Go 1.17's register ABI, which the probes read")]
    OldAbi(String),
    #[error("stripped and no .gopclntab: its functions cannot be found")]
    Stripped,
    #[error("stripped, and its .gopclntab is unreadable: {0}")]
    Pclntab(String),
    #[error("{0} is not in its function table")]
    NoFunction(&'static str),
    #[error("{name}: {why}")]
    Disassembly { name: &'static str, why: String },
    #[error(
        "Go {0}: no offsets for netFD (the table knows Go 1.17 to 1.22, and the binary has no DWARF)"
    )]
    NoOffsets(String),
    #[error("its DWARF: {0}")]
    Dwarf(String),
}

/// A Go binary's crypto/tls, ready to hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBinary {
    /// The Go version that built it ("go1.19.8").
    pub version: String,
    /// [`FUNCTIONS`], each found.
    pub functions: Vec<GoFunction>,
    pub offsets: GoOffsets,
    /// Where the offsets come from: "DWARF" or "table".
    pub offsets_from: &'static str,
    /// Where the functions were found: ".symtab" or ".gopclntab".
    pub symbols_from: &'static str,
}

/// One function: its address and, as file offsets (where uprobes are
/// attached), its entry and each `ret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoFunction {
    pub name: &'static str,
    pub address: u64,
    pub entry: u64,
    pub rets: Vec<u64>,
}

/// Whether `path` is a Go binary using crypto/tls, and how to hook it.
pub fn inspect(path: &Path) -> Result<Option<GoBinary>, GoError> {
    let file = std::fs::File::open(path).map_err(|e| GoError::Io(e.to_string()))?;
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return Ok(None);
    };
    let Some(info) = elf.section_by_name(".go.buildinfo") else {
        return Ok(None);
    };
    let info = info.data().map_err(|e| GoError::Io(e.to_string()))?;
    let Some(version) = buildinfo::version(info, |addr, len| read_address(&elf, addr, len)) else {
        return Ok(None);
    };
    // Symbols when the binary has them, else the runtime's function table.
    let symbols = symbol_bounds(&elf);
    let (bounds, symbols_from) = match symbols {
        Some(b) => (b, ".symtab"),
        None => (pclntab_bounds(&elf)?, ".gopclntab"),
    };
    if bounds.iter().all(Option::is_none) {
        return Ok(None);
    }
    if elf.architecture() != object::Architecture::X86_64 {
        return Err(GoError::Arch(format!("{:?}", elf.architecture())));
    }
    if minor(&version).is_some_and(|m| m < 17) {
        return Err(GoError::OldAbi(version));
    }
    let mut functions = Vec::new();
    for (name, bound) in FUNCTIONS.into_iter().zip(bounds) {
        let (address, end) = bound.ok_or(GoError::NoFunction(name))?;
        functions.push(function(&elf, name, address, end)?);
    }
    let (offsets, offsets_from) = match dwarf::offsets(&elf) {
        Ok(Some(o)) => (o, "DWARF"),
        Ok(None) => (table_offsets(&version)?, "table"),
        Err(e) => return Err(GoError::Dwarf(e)),
    };
    Ok(Some(GoBinary {
        version,
        functions,
        offsets,
        offsets_from,
        symbols_from,
    }))
}

/// The minor version of "go1.N…" ("go1.19.8", "go1.22rc1").
fn minor(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("go1.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Where a `*tls.Conn` keeps its socket number, by Go version, for
/// binaries without DWARF: Go 1.17 to 1.22, whose sources lay it out so:
/// `tls.Conn` opens with `conn net.Conn` (an interface: type word, data
/// word), `net.TCPConn` with its embedded `conn`, whose only field is
/// `fd *netFD`; `netFD` opens with `pfd poll.FD`, and `poll.FD` with
/// `fdmu fdMutex` (16 bytes) then `Sysfd int`. The tests hold the table to
/// the DWARF of the binaries the installed Go builds; other versions are
/// refused until they are checked and added.
pub fn table_offsets(version: &str) -> Result<GoOffsets, GoError> {
    match minor(version) {
        Some(17..=22) => Ok(GoOffsets {
            conn_data: 8,
            tcpconn_fd: 0,
            netfd_pfd: 0,
            pfd_sysfd: 16,
        }),
        _ => Err(GoError::NoOffsets(
            version.strip_prefix("go").unwrap_or(version).to_string(),
        )),
    }
}

type Bounds = [Option<(u64, u64)>; 2];

/// [`FUNCTIONS`]' (start, end) addresses from `.symtab`; `None` when the
/// binary has no symbol table (stripped).
fn symbol_bounds<'a, R: object::ReadRef<'a>>(elf: &object::File<'a, R>) -> Option<Bounds> {
    let mut any = false;
    let mut out: Bounds = [None; 2];
    for s in elf.symbols() {
        any = true;
        let Ok(name) = s.name() else { continue };
        if let Some(i) = FUNCTIONS.iter().position(|f| *f == name)
            && s.size() > 0
        {
            out[i] = Some((s.address(), s.address() + s.size()));
        }
    }
    any.then_some(out)
}

/// [`FUNCTIONS`]' (start, end) from the runtime's function table.
fn pclntab_bounds<'a, R: object::ReadRef<'a>>(
    elf: &object::File<'a, R>,
) -> Result<Bounds, GoError> {
    let Some(section) = elf.section_by_name(".gopclntab") else {
        // Without a function table nothing says where the functions are;
        // whether the binary has crypto/tls at all, its names' bytes do.
        return if mentions(elf, FUNCTIONS[0].as_bytes()) {
            Err(GoError::Stripped)
        } else {
            Ok([None; 2])
        };
    };
    let data = section
        .data()
        .map_err(|e| GoError::Pclntab(e.to_string()))?;
    let text = elf.section_by_name(".text").map(|s| s.address());
    let table = pclntab::Pclntab::parse(data, text).map_err(GoError::Pclntab)?;
    let mut out: Bounds = [None; 2];
    for f in table.functions() {
        let f = f.map_err(GoError::Pclntab)?;
        if let Some(i) = FUNCTIONS.iter().position(|n| n.as_bytes() == f.name) {
            out[i] = Some((f.entry, f.end));
        }
    }
    Ok(out)
}

/// Whether any section of the file holds `needle`.
fn mentions<'a, R: object::ReadRef<'a>>(elf: &object::File<'a, R>, needle: &[u8]) -> bool {
    elf.sections()
        .filter_map(|s| s.data().ok())
        .any(|d| d.windows(needle.len()).any(|w| w == needle))
}

/// `len` bytes at virtual address `addr`, from the section holding them.
fn read_address<'a, R: object::ReadRef<'a>>(
    elf: &object::File<'a, R>,
    addr: u64,
    len: u64,
) -> Option<Vec<u8>> {
    elf.sections()
        .filter(|s| s.address() <= addr && addr < s.address() + s.size())
        .find_map(|s| s.data_range(addr, len).ok().flatten())
        .map(<[u8]>::to_vec)
}

/// The function at `address..end`: its entry and `ret`s as file offsets.
fn function<'a, R: object::ReadRef<'a>>(
    elf: &object::File<'a, R>,
    name: &'static str,
    address: u64,
    end: u64,
) -> Result<GoFunction, GoError> {
    let fail = |why: String| GoError::Disassembly { name, why };
    let size = end
        .checked_sub(address)
        .filter(|s| (1..=MAX_FUNCTION_BYTES).contains(s))
        .ok_or_else(|| fail(format!("implausible size {address:#x}..{end:#x}")))?;
    let section = elf
        .sections()
        .find(|s| s.address() <= address && end <= s.address() + s.size())
        .ok_or_else(|| fail(format!("{address:#x} is in no section")))?;
    let (file_start, _) = section
        .file_range()
        .ok_or_else(|| fail("its section has no bytes in the file".into()))?;
    let code = section
        .data_range(address, size)
        .ok()
        .flatten()
        .ok_or_else(|| fail("its bytes cannot be read".into()))?;
    let file_offset = |addr: u64| addr - section.address() + file_start;
    let rets = ret_addresses(code, address).map_err(fail)?;
    if rets.is_empty() {
        return Err(fail("no ret instruction".into()));
    }
    Ok(GoFunction {
        name,
        address,
        entry: file_offset(address),
        rets: rets.into_iter().map(file_offset).collect(),
    })
}

/// The addresses of the `ret` instructions in `code` (a whole function at
/// `address`), by decoding it from its start: Go puts no data in its
/// text, so a linear sweep sees every instruction. An undecodable byte is
/// an error (the sweep would be out of step from there).
pub fn ret_addresses(code: &[u8], address: u64) -> Result<Vec<u64>, String> {
    use iced_x86::{Decoder, DecoderOptions, FlowControl};
    let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
    let mut rets = Vec::new();
    while decoder.can_decode() {
        let i = decoder.decode();
        if i.is_invalid() {
            return Err(format!("undecodable instruction at {:#x}", i.ip()));
        }
        if i.flow_control() == FlowControl::Return {
            rets.push(i.ip());
        }
    }
    Ok(rets)
}

#[cfg(test)]
mod tests;
