use super::*;
use testkit::go::{Link, build};
use testkit::{TempDir, require_tools};

/// A Go program with crypto/tls's `(*Conn).Write` and `Read` in it.
const TLS_CLIENT: &str = r#"package main

import (
	"crypto/tls"
	"os"
)

func main() {
	c, err := tls.Dial("tcp", os.Args[1], &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		os.Exit(1)
	}
	c.Write([]byte("ping"))
	b := make([]byte, 4)
	c.Read(b)
}
"#;

const HELLO: &str = r#"package main

import "fmt"

func main() { fmt.Println("hello") }
"#;

/// The `ret`s of `function` as `go tool objdump` lists them: the oracle.
fn objdump_rets(binary: &Path, function: &str) -> Vec<u64> {
    let pattern = format!("^{}$", regex::escape(function));
    let out = std::process::Command::new("go")
        .args(["tool", "objdump", "-s", &pattern])
        .arg(binary)
        .output()
        .unwrap();
    assert!(out.status.success(), "go tool objdump");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("RET"))
        .map(|l| {
            let addr = l.split_whitespace().nth(1).unwrap();
            u64::from_str_radix(addr.trim_start_matches("0x"), 16).unwrap()
        })
        .collect()
}

fn ret_addresses_of(f: &GoFunction) -> Vec<u64> {
    f.rets.iter().map(|r| r - f.entry + f.address).collect()
}

#[test]
fn full_and_stripped_binaries_give_the_same_functions_and_rets() {
    if !require_tools("Go binary inspection", false, &["go"]) {
        return;
    }
    let dir = TempDir::new("go-inspect");
    let full = build(dir.root(), "full", TLS_CLIENT, Link::Full);
    let stripped = build(dir.root(), "stripped", TLS_CLIENT, Link::Stripped);
    let a = inspect(&full)
        .unwrap()
        .expect("a Go binary with crypto/tls");
    let b = inspect(&stripped)
        .unwrap()
        .expect("a Go binary with crypto/tls");
    assert_eq!((a.symbols_from, a.offsets_from), (".symtab", "DWARF"));
    assert_eq!((b.symbols_from, b.offsets_from), (".gopclntab", "table"));
    let go = std::process::Command::new("go")
        .arg("version")
        .output()
        .unwrap();
    let installed = String::from_utf8_lossy(&go.stdout);
    assert!(
        installed.contains(&format!("{} ", a.version)),
        "{installed}"
    );
    assert_eq!(a.version, b.version);
    // The table agrees with what this Go's DWARF says.
    assert_eq!(a.offsets, b.offsets);
    assert_eq!(a.offsets, table_offsets(&a.version).unwrap());
    assert_eq!(a.functions.len(), 2);
    for (f, g) in a.functions.iter().zip(&b.functions) {
        assert_eq!(f.name, g.name);
        assert_eq!(ret_addresses_of(f), ret_addresses_of(g), "{}", f.name);
        assert!(!f.rets.is_empty(), "{f:?}");
        // The ret-finder against Go's own disassembler (which needs the
        // symbols: the stripped binary's are the same, above).
        assert_eq!(
            ret_addresses_of(f),
            objdump_rets(&full, f.name),
            "{}",
            f.name
        );
        // File offsets: the entry's bytes in the file are the function's
        // (Go's stack check opens it), and each ret offset holds 0xc3.
        let bytes = std::fs::read(&full).unwrap();
        for r in &f.rets {
            assert_eq!(bytes[*r as usize], 0xc3, "{}: {r:#x}", f.name);
        }
        let sbytes = std::fs::read(&stripped).unwrap();
        for r in &g.rets {
            assert_eq!(sbytes[*r as usize], 0xc3, "{}: {r:#x}", g.name);
        }
        let entry = &bytes[f.entry as usize..f.entry as usize + 16];
        let sentry = &sbytes[g.entry as usize..g.entry as usize + 16];
        assert_eq!(entry, sentry, "{}", f.name);
    }
}

#[test]
fn binaries_without_crypto_tls_are_nothing_to_hook() {
    if !require_tools("Go binary inspection", false, &["go"]) {
        return;
    }
    let dir = TempDir::new("go-inspect");
    let hello = build(dir.root(), "hello", HELLO, Link::Full);
    assert_eq!(inspect(&hello), Ok(None));
    let hello = build(dir.root(), "hello-s", HELLO, Link::Stripped);
    assert_eq!(inspect(&hello), Ok(None));
    // Not Go at all.
    assert_eq!(inspect(&std::env::current_exe().unwrap()), Ok(None));
    assert_eq!(inspect(Path::new("/etc/hostname")), Ok(None));
    assert!(matches!(
        inspect(Path::new("/nonexistent/binary")),
        Err(GoError::Io(_))
    ));
}

/// A stripped binary whose function table cannot be found is reported
/// with why (the section renamed: the runtime finds its table through its
/// own symbols, the file's section headers are all that changes).
#[test]
fn a_stripped_binary_without_its_table_says_why() {
    if !require_tools("Go binary inspection", false, &["go", "objcopy"]) {
        return;
    }
    let dir = TempDir::new("go-inspect");
    let stripped = build(dir.root(), "stripped", TLS_CLIENT, Link::Stripped);
    let renamed = dir.path("renamed");
    let done = std::process::Command::new("objcopy")
        .args(["--rename-section", ".gopclntab=.gopclntab_moved"])
        .arg(&stripped)
        .arg(&renamed)
        .status()
        .unwrap();
    assert!(done.success(), "objcopy");
    let err = inspect(&renamed).unwrap_err();
    assert_eq!(err, GoError::Stripped);
    assert_eq!(
        err.to_string(),
        "stripped and no .gopclntab: its functions cannot be found"
    );
}

#[test]
fn versions_outside_the_table_are_reported_not_guessed() {
    for v in ["go1.17", "go1.19.8", "go1.22rc1", "go1.22.12"] {
        assert!(table_offsets(v).is_ok(), "{v}");
    }
    let err = table_offsets("go1.23.4").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("Go 1.23.4: no offsets for netFD"),
        "{err}"
    );
    assert!(table_offsets("go1.16.15").is_err());
    assert!(table_offsets("devel +abc").is_err());
    assert_eq!(minor("go1.9"), Some(9));
    assert_eq!(minor("go2"), None);
}

#[test]
fn rets_are_found_by_decoding_from_the_start() {
    // mov rbx, rax; ret; int3; ret 8
    let code = [0x48, 0x89, 0xc3, 0xc3, 0xcc, 0xc2, 0x08, 0x00];
    assert_eq!(ret_addresses(&code, 0x1000), Ok(vec![0x1003, 0x1005]));
    // The 0xc3 inside `mov ebx, 0xc3` is no ret.
    let code = [0xbb, 0xc3, 0x00, 0x00, 0x00, 0xc3];
    assert_eq!(ret_addresses(&code, 0), Ok(vec![5]));
    // An opcode invalid in 64-bit mode (push es).
    assert!(ret_addresses(&[0x06, 0xc3], 0).is_err());
}
