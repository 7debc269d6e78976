#!/usr/bin/env bash
# Runs every test of the project: formatting, lints, the workspace's tests.
# Safe to run on a fresh machine: it installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --quiet
echo "== cargo test"
cargo test --workspace
echo "== board tests (real device trees from Debian's arm64 kernel package)"
DTBS=$(bash ci/board-dtbs.sh)
DMABUF_DTB_DIR=$DTBS cargo test -p dmabuf-dt --test boards -- --include-ignored
DMABUF_DTB_DIR=$DTBS cargo test -p dmabuf-check --test plan_boards -- --include-ignored
cargo build --release -q -p dmabuf-dt --example sweep
timeout 60 target/release/examples/sweep "$DTBS"
echo "== browser tests (every example's HTML report in headless chromium)"
bash ci/browser-tests.sh
echo "== kernel tests (dmabuf-linux on a real kernel under qemu)"
bash ci/kernel-tests.sh
echo "== guest tests (dmabuf record on a real kernel under qemu)"
bash ci/guest-tests.sh
