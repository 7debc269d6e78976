/* The device renders a frame; the CPU reads its header through the mmap without a
 * READ bracket: its cache still holds the lines it wrote before.
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
    memset(p, 0x11, SIZE);
    sync_buf(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
    gpu_job(drm, h, 1);
    wait_writes(buf);
#ifdef FIXED
    sync_buf(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
#endif
    unsigned s = sum(p, 4096);
#ifdef FIXED
    sync_buf(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
#endif
    printf("unbracketed-read: header sum %u\n", s);
    return 0;
}
