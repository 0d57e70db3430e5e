# kubetap's node worker: the static tap-worker binary (x86_64-unknown-linux-musl,
# its eBPF programs embedded) and nothing else. `cargo xtask images` builds it
# with a context holding only that binary. It runs as uid 0 with only the
# capabilities the chart adds (docs/security.md, "Least privilege"), and
# drops the rest itself at start.
FROM scratch
COPY tap-worker /tap-worker
ENTRYPOINT ["/tap-worker"]
