//! kubetap eBPF programs (uprobes for TLS plaintext) and their shared `#[repr(C)]` types: not yet built; they arrive with the TLS step.
