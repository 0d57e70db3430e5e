//! The kernel's struct offsets the socket walk in the kernel programs
//! needs, read from the running kernel's BTF (`/sys/kernel/btf/vmlinux`)
//! with `btfparse`: what CO-RE relocations do for C programs, which Rust
//! eBPF programs do not have. Without BTF, or with a layout that does not
//! have one of the fields, there is no walk and sockets are resolved from
//! /proc (which misses connections closed right after their last call).

use btfparse::{Offset, Readable, TypeInformation};
use tap_ebpf_common::KernelOffsets;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

struct Bytes(Vec<u8>);

impl Readable for Bytes {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        match self.0.get(at..at.saturating_add(buffer.len())) {
            Some(b) if b.len() == buffer.len() => {
                buffer.copy_from_slice(b);
                Ok(())
            }
            _ => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
        }
    }
}

/// The offsets of this kernel, or why there are none.
pub fn kernel_offsets() -> Result<KernelOffsets, String> {
    let bytes = std::fs::read(VMLINUX).map_err(|e| format!("{VMLINUX}: {e}"))?;
    offsets_in(&bytes)
}

/// The offsets in a BTF blob.
pub fn offsets_in(btf: &[u8]) -> Result<KernelOffsets, String> {
    let types = TypeInformation::new(&Bytes(btf.to_vec()))
        .map_err(|e| format!("reading the kernel's BTF: {e:?}"))?;
    let at = |ty: &str, path: &str| -> Result<u32, String> {
        let id = types
            .id_of(ty)
            .ok_or_else(|| format!("the kernel's BTF has no struct {ty}"))?;
        match types.offset_of(id, path) {
            Ok((_, Offset::ByteOffset(o))) => Ok(o),
            Ok((_, Offset::BitOffsetAndSize(..))) => Err(format!("{ty}.{path} is a bit field")),
            Err(e) => Err(format!("{ty}.{path}: {e:?}")),
        }
    };
    Ok(KernelOffsets {
        valid: 1,
        task_files: at("task_struct", "files")?,
        files_fdt: at("files_struct", "fdt")?,
        fdt_max_fds: at("fdtable", "max_fds")?,
        fdt_fd: at("fdtable", "fd")?,
        file_private_data: at("file", "private_data")?,
        socket_file: at("socket", "file")?,
        socket_sk: at("socket", "sk")?,
        skc_family: at("sock", "__sk_common.skc_family")?,
        skc_num: at("sock", "__sk_common.skc_num")?,
        skc_dport: at("sock", "__sk_common.skc_dport")?,
        skc_rcv_saddr: at("sock", "__sk_common.skc_rcv_saddr")?,
        skc_daddr: at("sock", "__sk_common.skc_daddr")?,
        skc_v6_rcv_saddr: at("sock", "__sk_common.skc_v6_rcv_saddr")?,
        skc_v6_daddr: at("sock", "__sk_common.skc_v6_daddr")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This kernel's layout: where the fields are is the kernel's business,
    /// but the relations between them are not (sock_common starts sock;
    /// the IPv4 pair lies before the ports; IPv6 addresses are apart).
    #[test]
    fn this_kernels_offsets_are_found() {
        if !std::path::Path::new(VMLINUX).exists() {
            testkit::skip("kernel BTF offsets", "no /sys/kernel/btf/vmlinux");
            return;
        }
        let o = kernel_offsets().unwrap();
        assert_eq!(o.valid, 1);
        assert_eq!(o.skc_daddr, 0, "skc_daddr opens sock_common: {o:?}");
        assert_eq!(o.skc_rcv_saddr, 4, "{o:?}");
        assert!(
            o.skc_dport > o.skc_rcv_saddr && o.skc_num == o.skc_dport + 2,
            "{o:?}"
        );
        assert!(
            o.skc_v6_daddr >= 16 && o.skc_v6_rcv_saddr == o.skc_v6_daddr + 16,
            "{o:?}"
        );
        assert!(o.task_files > 0 && o.socket_sk > 0, "{o:?}");
    }

    #[test]
    fn a_blob_that_is_no_btf_is_an_error_not_a_panic() {
        assert!(offsets_in(b"no btf here").is_err());
        assert!(offsets_in(&[]).is_err());
    }
}
