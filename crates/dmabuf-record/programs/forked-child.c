/* A forked child fills the frame the parent mapped; the parent hands it to the device.
 *
 * record broken: outside
 * check broken: misuse, stale_read
 * record fixed:
 * check fixed:
 */
#include <sys/wait.h>
#include "common.h"

int main(void)
{
    int buf = heap_alloc(SIZE), drm = vgem_open();
    uint8_t *p = map_buf(buf);
    uint32_t h = gpu_import(drm, buf);
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
#ifdef FIXED
        sync_buf(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
#endif
        memset(p, 0x44, SIZE);
#ifdef FIXED
        sync_buf(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
#endif
        _exit(0);
    }
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) die("child");
    gpu_job(drm, h, 0);
    wait_writes(buf);
    printf("forked-child: the child filled the frame\n");
    return 0;
}
