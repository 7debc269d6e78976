#!/usr/bin/env bash
# Runs in the guest (tools/guest): everything ci/guest-tests.sh checks, in one boot.
# Usage: all.sh DMABUF WORKDIR
set -u
DMABUF=$1 W=$2
HERE=$(dirname "$0")
"$HERE/record-programs.sh" "$DMABUF" "$W/progs" "$W/out"
"$HERE/record-gstreamer.sh" "$DMABUF" "$W/gst" 30
