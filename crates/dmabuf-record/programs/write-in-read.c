/* The CPU fills a frame inside a READ bracket, then the device reads it. On
 * arm64-noncoherent the frame arrives all the same: the end of the bracket cleans the
 * buffer for the mapped device whatever the direction (arm64's arch_sync_dma_for_device
 * cleans for every direction), so only the interposer sees the misuse.
 *
 * record broken: write_in_read
 * check broken: 
 * record fixed:
 * check fixed:
 */
#include "common.h"

#ifdef FIXED
#define DIR DMA_BUF_SYNC_RW
#else
#define DIR DMA_BUF_SYNC_READ
#endif

int main(void)
{
    int buf = heap_alloc(SIZE), drm = vgem_open();
    uint8_t *p = map_buf(buf);
    uint32_t h = gpu_import(drm, buf);
    sync_buf(buf, DMA_BUF_SYNC_START | DIR);
    unsigned before = sum(p, 4096);
    memset(p, 0x22, SIZE);
    sync_buf(buf, DMA_BUF_SYNC_END | DIR);
    gpu_job(drm, h, 0);
    wait_writes(buf);
    printf("write-in-read: header sum before %u\n", before);
    return 0;
}
