/* litmus/cpu-to-dev-no-end.dmabuf: the same without the end of the bracket; the Minimal
 * policy maintains nothing the CPU has not declared written. Expected: a violation. */
#include "common.pml"
active proctype program() {
    byte seen;
    cpu_write(90);
    seen = mem;
    assert(seen == 90);
    done = true
}
