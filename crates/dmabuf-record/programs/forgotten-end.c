/* The CPU fills a frame and never ends its WRITE bracket before the device reads it.
 *
 * record broken: 
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
    memset(p, 0x33, SIZE);
#ifdef FIXED
    sync_buf(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
#endif
    gpu_job(drm, h, 0);
    wait_writes(buf);
    printf("forgotten-end: filled %d bytes\n", SIZE);
    return 0;
}
