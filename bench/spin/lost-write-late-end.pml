/* litmus/lost-write-late-end.dmabuf: the CPU's bracket is still open (a dirty line) when
 * the decoder writes the same bytes; the late end cleans the old line over them, and the
 * CPU then reads what it wrote itself. Expected: a violation. */
#include "common.pml"
active proctype program() {
    byte seen;
    clean();            /* map vdec b from_device (arm64 cleans at map) */
    cpu_write(17);    /* cpu begin b write; cpu write b[0..64] = 17 */
    mem = 34;         /* vdec write b[0..64] = 34 */
    clean();            /* cpu end b write */
    invalidate();       /* unmap vdec b; cpu begin b read */
    cpu_read(seen);     /* cpu read b[0..64] expect 34 */
    assert(seen == 34);
    done = true
}
