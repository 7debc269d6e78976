/* The device renders a frame; the program saves it with write(2) straight from the mmap,
 * without a READ bracket. The kernel's copy_from_user would fail with EFAULT on a closed
 * page; the interposer opens the pages first and sees the read they are.
 *
 * record broken: outside
 * check broken: misuse, stale_read
 * record fixed:
 * check fixed:
 */
#include "common.h"

int main(void)
{
    int buf = heap_alloc(SIZE), drm = vgem_open();
    uint8_t *p = map_buf(buf);
    uint32_t h = gpu_import(drm, buf);
    sync_buf(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
    memset(p, 0x55, SIZE);
    sync_buf(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
    gpu_job(drm, h, 1);
    wait_writes(buf);
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (out < 0) die("open /dev/null");
#ifdef FIXED
    sync_buf(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
#endif
    ssize_t n = write(out, p, SIZE);
#ifdef FIXED
    sync_buf(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
#endif
    if (n != SIZE) die("write of the frame");
    printf("write-syscall: saved %zd bytes\n", n);
    return 0;
}
