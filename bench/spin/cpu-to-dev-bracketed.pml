/* litmus/cpu-to-dev-bracketed.dmabuf (0x5a is 90): the CPU writes inside a bracket and ends it (a
 * clean), then a non-coherent GPU reads. Expected: no assertion violation. */
#include "common.pml"
active proctype program() {
    byte seen;
    cpu_write(90);    /* cpu write b[0..64] = 90 */
    clean();            /* cpu end b write: end_cpu_access(TO_DEVICE) */
    seen = mem;         /* map gpu b to_device; gpu read b[0..64] */
    assert(seen == 90);
    done = true
}
