#!/usr/bin/env bash
# Runs in the guest (tools/guest): a GStreamer pipeline from Debian's packages captures
# from vivid's video capture node with io-mode=dmabuf (V4L2 MMAP buffers exported with
# EXPBUF) into filesink, which maps each frame and writes it to a file, once plain and
# once under `dmabuf record`. Usage: record-gstreamer.sh DMABUF OUTDIR [FRAMES]
set -u
DMABUF=$1 OUT=$2 FRAMES=${3:-30}
mkdir -p "$OUT"
cd "$OUT"
DEV=
for d in /sys/class/video4linux/video*; do
    [ "$(cat "$d/name")" = vivid-000-vid-cap ] && DEV=/dev/$(basename "$d")
done
[ -n "$DEV" ] || { echo "no vivid capture node" > gst.err; exit 1; }
echo "$DEV" > gst.device
PIPE=(v4l2src "device=$DEV" io-mode=dmabuf "num-buffers=$FRAMES" !
      video/x-raw,format=YUY2,width=640,height=360 ! filesink location=frames.yuv)
export GST_REGISTRY=$OUT/gst-registry.bin HOME=$OUT
gst-launch-1.0 -q "${PIPE[@]}" > gst.plain.out 2>&1
echo $? > gst.plain.rc
stat -c %s frames.yuv > gst.plain.bytes
"$DMABUF" record --live -o gst.dmabuf --raw-log gst.log -- gst-launch-1.0 -q "${PIPE[@]}" > gst.out 2> gst.err
echo $? > gst.rc
stat -c %s frames.yuv > gst.bytes
