# Sourced by bench/scale.sh and bench/explore-snapshots.sh: the pipeline they measure.
#
# pipeline SIZE FRAMES   prints the scenario: a video decoder writes a frame into a
#                        system-heap buffer of SIZE on arm64-noncoherent, and the CPU reads
#                        it through mmap inside the sync ioctl's READ brackets, FRAMES times.
pipeline() {
    cat <<SCN
platform arm64-noncoherent
buffer cap size=$1 heap=system
attach vdec cap
mmap cap
repeat $2 {
  map vdec cap from_device
  vdec write cap = frame
  unmap vdec cap
  sync cap start read
  cpu read cap expect frame
  sync cap end read
}
munmap cap
detach vdec cap
release cap
SCN
}
