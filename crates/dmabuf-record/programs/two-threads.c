/* The device renders a frame; two threads read it one after the other, the first
 * without a bracket.
 *
 * record broken: outside
 * check broken: misuse, stale_read
 * record fixed:
 * check fixed:
 */
#include <pthread.h>
#include "common.h"

static int buf;
static uint8_t *p;
static unsigned sums[2];

static void *reader(void *arg)
{
    int i = (int)(intptr_t)arg;
    int bracket = i == 1;
#ifdef FIXED
    bracket = 1;
#endif
    if (bracket) sync_buf(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
    sums[i] = sum(p + i * (SIZE / 2), SIZE / 2);
    if (bracket) sync_buf(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
    return NULL;
}

int main(void)
{
    int drm = vgem_open();
    buf = heap_alloc(SIZE);
    p = map_buf(buf);
    uint32_t h = gpu_import(drm, buf);
    gpu_job(drm, h, 1);
    wait_writes(buf);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        pthread_create(&t[i], NULL, reader, (void *)(intptr_t)i);
        pthread_join(t[i], NULL);
    }
    printf("two-threads: sums %u %u\n", sums[0], sums[1]);
    return 0;
}
