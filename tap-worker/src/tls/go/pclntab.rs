//! The Go runtime's function table (`.gopclntab`), which a stripped binary
//! keeps (the runtime needs it for stack traces): each function's name and
//! entry, as Go's `debug/gosym` reads it. Written by hand, the minimum for
//! names and bounds, every read bounds-checked: the crates that read it
//! are whole binary-analysis tools. Go 1.18 and later only (header magic
//! `0xfffffff0`, `0xfffffff1` since 1.20, the same layout for what is read
//! here): a 1.16/1.17 table is refused by name.
//!
//! The header: magic (4 bytes), two pad bytes, the instruction size
//! quantum, the pointer size, then pointer-sized words: nfunc, nfiles,
//! textStart, and the offsets (from the header) of the name table, the
//! compilation units, the file table, the pc tables and the function table.
//! The function table is `nfunc` pairs of 32-bit (entry offset from
//! textStart, offset of the function's `_func` record from the table)
//! and one last entry offset, the end of the last function; a `_func`
//! record starts with its entry offset and the offset of its name in the
//! name table (NUL-terminated).

const GO118: u32 = 0xffff_fff0;
const GO120: u32 = 0xffff_fff1;
const GO116: u32 = 0xffff_fffa;
const GO12: u32 = 0xffff_fffb;
/// Functions in one table, at most (Kubernetes' largest binaries have
/// about 100,000).
const MAX_FUNCTIONS: u64 = 4 << 20;

/// A function: its name's bytes, entry and end addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function<'a> {
    pub name: &'a [u8],
    pub entry: u64,
    pub end: u64,
}

#[derive(Debug)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    nfunc: usize,
    text_start: u64,
    names: usize,
    table: usize,
}

impl<'a> Pclntab<'a> {
    /// Reads the header of `data` (the section's bytes). `text` is the
    /// `.text` section's address, used as the entries' base (the header's
    /// own may be left for a relocation to fill, as in PIE binaries).
    pub fn parse(data: &'a [u8], text: Option<u64>) -> Result<Pclntab<'a>, String> {
        let magic = u32::from_le_bytes(
            data.get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or("too short")?,
        );
        match magic {
            GO118 | GO120 => {}
            GO116 => return Err("a Go 1.16/1.17 table, which is not read".into()),
            GO12 => return Err("a Go 1.2-1.15 table, which is not read".into()),
            m => return Err(format!("unknown magic {m:#x}")),
        }
        if data.get(4..6) != Some(&[0, 0]) || data.get(7) != Some(&8) {
            return Err("not a 64-bit table".into());
        }
        let word = |i: usize| -> Result<u64, String> {
            let at = 8 + 8 * i;
            data.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| "header cut short".to_string())
        };
        let nfunc = word(0)?;
        if nfunc > MAX_FUNCTIONS {
            return Err(format!("{nfunc} functions"));
        }
        let offset = |i: usize| -> Result<usize, String> {
            let o = usize::try_from(word(i)?).map_err(|e| e.to_string())?;
            if o >= data.len() {
                return Err(format!("header word {i} ({o:#x}) is past the table"));
            }
            Ok(o)
        };
        let t = Pclntab {
            data,
            nfunc: nfunc as usize,
            text_start: text.unwrap_or(word(2)?),
            names: offset(3)?,
            table: offset(7)?,
        };
        // The function table itself: nfunc pairs and the end.
        t.u32_at(t.table + 8 * t.nfunc)?;
        Ok(t)
    }

    fn u32_at(&self, at: usize) -> Result<u32, String> {
        self.data
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| format!("offset {at:#x} is past the table"))
    }

    /// The functions, in address order.
    pub fn functions(&self) -> impl Iterator<Item = Result<Function<'a>, String>> + '_ {
        (0..self.nfunc).map(move |i| self.function(i))
    }

    fn function(&self, i: usize) -> Result<Function<'a>, String> {
        let pair = self.table + 8 * i;
        let entry = self.u32_at(pair)?;
        let record = self.table + self.u32_at(pair + 4)? as usize;
        let end = self.u32_at(pair + 8)?;
        if self.u32_at(record)? != entry {
            return Err(format!("function {i}: its record names another entry"));
        }
        let name_at = i32::from_le_bytes(self.u32_at(record + 4)?.to_le_bytes());
        let from = usize::try_from(name_at)
            .ok()
            .and_then(|n| self.names.checked_add(n))
            .ok_or_else(|| format!("function {i}: name offset {name_at}"))?;
        let rest = self
            .data
            .get(from..)
            .ok_or_else(|| format!("function {i}: name past the table"))?;
        let len = rest
            .iter()
            .position(|b| *b == 0)
            .ok_or_else(|| format!("function {i}: name without its end"))?;
        Ok(Function {
            name: &rest[..len],
            entry: self.text_start + u64::from(entry),
            end: self.text_start + u64::from(end),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table of two functions, "a.f" at 0x10..0x30 and "a.g" at
    /// 0x30..0x38, laid out as Go 1.18 does.
    fn table() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(GO118.to_le_bytes());
        b.extend([0, 0, 1, 8]);
        let names = 72u64;
        let ftab = names + 8;
        for w in [2u64, 0, 0x1000, names, 0, 0, 0, ftab] {
            b.extend(w.to_le_bytes());
        }
        b.extend(b"a.f\0a.g\0");
        // Pairs (entry, record), the end, then the two records.
        let rec = 8 * 2 + 4;
        for w in [0x10u32, rec, 0x30, rec + 8, 0x38] {
            b.extend(w.to_le_bytes());
        }
        for w in [0x10u32, 0, 0x30, 4] {
            b.extend(w.to_le_bytes());
        }
        b
    }

    #[test]
    fn names_and_bounds_are_read() {
        let b = table();
        let t = Pclntab::parse(&b, None).unwrap();
        let f: Vec<Function> = t.functions().map(Result::unwrap).collect();
        assert_eq!(
            f,
            [
                Function {
                    name: b"a.f",
                    entry: 0x1010,
                    end: 0x1030
                },
                Function {
                    name: b"a.g",
                    entry: 0x1030,
                    end: 0x1038
                },
            ]
        );
        // The text section's address wins over the header's.
        let t = Pclntab::parse(&b, Some(0x40_0000)).unwrap();
        assert_eq!(t.functions().next().unwrap().unwrap().entry, 0x40_0010);
    }

    #[test]
    fn damaged_tables_are_errors_never_panics() {
        let b = table();
        for cut in 0..b.len() {
            if let Ok(t) = Pclntab::parse(&b[..cut], None) {
                let _ = t.functions().collect::<Vec<_>>();
            }
        }
        let mut old = b.clone();
        old[..4].copy_from_slice(&GO116.to_le_bytes());
        assert!(Pclntab::parse(&old, None).unwrap_err().contains("1.16"));
        let mut huge = b.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Pclntab::parse(&huge, None).is_err());
        // A name offset pointing outside.
        let mut far = b;
        let rec = 80 + 20 + 4;
        far[rec..rec + 4].copy_from_slice(&i32::MAX.to_le_bytes());
        let t = Pclntab::parse(&far, None).unwrap();
        assert!(t.functions().next().unwrap().is_err());
    }
}
