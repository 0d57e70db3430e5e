# kubetap's hub: the static tap-hub binary (x86_64-unknown-linux-musl) and
# nothing else. `cargo xtask images` builds it with a context holding only
# that binary. No CA bundle: the hub calls nothing outside the cluster.
# Non-root, as the chart runs it (runAsUser 65532, read-only root); with
# --certs and --token-file given it writes no file.
FROM scratch
COPY tap-hub /tap-hub
USER 65532:65532
ENTRYPOINT ["/tap-hub"]
