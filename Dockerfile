# syntax=docker/dockerfile:1
# blockprobe's container image: `docker build -t blockprobe:0.1.0 .` from the repository root.
# The builder has what building the eBPF object needs (as `cargo xtask setup` installs it:
# nightly Rust with rust-src, LLVM 22, bpf-linker 0.13); the image has only the binary, which
# embeds the eBPF object. deploy/k8s/daemonset.yaml runs it. See docs/deploy.md.

FROM rust:1.95-bookworm AS builder
# LLVM 22 from Debian's archive, as on this project's machines (xtask/src/setup.rs APT_PACKAGES).
# An archive without llvm-22-dev needs apt.llvm.org's bookworm repository instead.
RUN apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
# aya-build compiles the eBPF crate with `nightly` and -Z build-std=core. This project's machines
# have rustc 1.97.0-nightly (2026-05-19), whose LLVM 22 matches bpf-linker's; a later nightly on
# another LLVM major needs a bpf-linker built for that LLVM.
RUN rustup toolchain install nightly --profile minimal --component rust-src
ENV LLVM_PREFIX=/usr/lib/llvm-22 PATH=/usr/lib/llvm-22/bin:$PATH
RUN cargo install bpf-linker --version 0.13.0 --no-default-features --features llvm-22
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p blockprobe \
 && cp target/release/blockprobe /usr/local/bin/blockprobe \
 && /usr/local/bin/blockprobe --version

# glibc 2.34 or later and libgcc_s are all the binary needs.
FROM gcr.io/distroless/cc-debian12 AS runtime
COPY --from=builder /usr/local/bin/blockprobe /usr/local/bin/blockprobe
# Root: the added capabilities are only effective for root (see deploy/k8s/daemonset.yaml).
USER 0
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/blockprobe"]
CMD ["daemon", "--metrics", "0.0.0.0:9464"]
