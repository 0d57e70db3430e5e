//! Where a `*tls.Conn` keeps its socket number, read from the binary's own
//! DWARF (`.debug_info`, zlib-compressed as Go writes it) with gimli: the
//! members `crypto/tls.Conn.conn`, `net.TCPConn.conn`, `net.conn.fd`,
//! `net.netFD.pfd` and `internal/poll.FD.Sysfd`. No guessing by version
//! when the binary says it itself.

use super::GoOffsets;
use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::{Object as _, ObjectSection as _};
use std::borrow::Cow;

/// (struct, member) pairs read, in the order of [`offsets`]' array.
const MEMBERS: [(&str, &str); 5] = [
    ("crypto/tls.Conn", "conn"),
    ("net.TCPConn", "conn"),
    ("net.conn", "fd"),
    ("net.netFD", "pfd"),
    ("internal/poll.FD", "Sysfd"),
];

/// The offsets in `elf`'s DWARF; `None` when it has no DWARF (stripped
/// with `-w`); an error when it has but lacks one of them.
pub fn offsets<'a, R: object::ReadRef<'a>>(
    elf: &object::File<'a, R>,
) -> Result<Option<GoOffsets>, String> {
    let Some(info) = elf.section_by_name(".debug_info") else {
        return Ok(None);
    };
    let load = |s: Option<object::Section<'a, '_, R>>| -> Result<Cow<'a, [u8]>, String> {
        match s {
            Some(s) => s.uncompressed_data().map_err(|e| e.to_string()),
            None => Ok(Cow::Borrowed(&[])),
        }
    };
    let info = load(Some(info))?;
    let abbrev = load(elf.section_by_name(".debug_abbrev"))?;
    let strings = load(elf.section_by_name(".debug_str"))?;
    let found = members(&info, &abbrev, &strings).map_err(|e| e.to_string())?;
    let get =
        |i: usize| found[i].ok_or_else(|| format!("no member {}.{}", MEMBERS[i].0, MEMBERS[i].1));
    let narrow = |v: u64| u16::try_from(v).map_err(|_| format!("offset {v} out of range"));
    Ok(Some(GoOffsets {
        // The interface's data word follows its type word.
        conn_data: narrow(get(0)? + 8)?,
        tcpconn_fd: narrow(get(1)? + get(2)?)?,
        netfd_pfd: narrow(get(3)?)?,
        pfd_sysfd: narrow(get(4)?)?,
    }))
}

/// Each of [`MEMBERS`]' offsets, when found; stops once all are.
fn members(info: &[u8], abbrev: &[u8], strings: &[u8]) -> gimli::Result<[Option<u64>; 5]> {
    let info = gimli::DebugInfo::new(info, LittleEndian);
    let abbrev = gimli::DebugAbbrev::new(abbrev, LittleEndian);
    let strings = gimli::DebugStr::new(strings, LittleEndian);
    let name_of = |v: AttributeValue<EndianSlice<'_, LittleEndian>>| -> Option<Vec<u8>> {
        match v {
            AttributeValue::String(s) => Some(s.to_vec()),
            AttributeValue::DebugStrRef(o) => strings.get_str(o).ok().map(|s| s.to_vec()),
            _ => None,
        }
    };
    let mut found = [None; 5];
    let mut units = info.units();
    while let Some(unit) = units.next()? {
        let abbrevs = unit.abbreviations(&abbrev)?;
        let mut entries = unit.entries(&abbrevs);
        // The struct of MEMBERS being walked, and its depth.
        let mut inside: Option<(&str, isize)> = None;
        while let Some(e) = entries.next_dfs()? {
            if inside.is_some_and(|(_, depth)| e.depth() <= depth) {
                inside = None;
            }
            let Some(name) = e.attr_value(gimli::DW_AT_name).and_then(name_of) else {
                continue;
            };
            if e.tag() == gimli::DW_TAG_structure_type {
                inside = MEMBERS
                    .iter()
                    .find(|(s, _)| s.as_bytes() == name)
                    .map(|(s, _)| (*s, e.depth()));
            } else if e.tag() == gimli::DW_TAG_member
                && let Some((of, _)) = inside
                && let Some(i) = MEMBERS
                    .iter()
                    .position(|(s, m)| *s == of && m.as_bytes() == name)
            {
                found[i] = e
                    .attr(gimli::DW_AT_data_member_location)
                    .and_then(|a| a.udata_value());
            }
        }
        if found.iter().all(Option::is_some) {
            break;
        }
    }
    Ok(found)
}
