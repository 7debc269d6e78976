/* The recording overhead benchmark's program: frames through dma-bufs from the system
 * heap, every CPU access inside a sync bracket, in three workloads:
 *   fill     START WRITE, memset the frame, END WRITE (touching pages and nothing else:
 *            the worst case for page protection)
 *   process  START READ, a histogram of every byte of the frame, END READ; START WRITE,
 *            the inverted frame into a second buffer, END WRITE (a per-pixel filter)
 *   peek     START READ, the 64-byte header, END READ (one page a frame)
 * Usage: frames WORKLOAD FRAMES FRAME_BYTES [standin]. Prints the loop's time and frames
 * per second. With `standin` the buffers are memfds named dmabuf-record-standin, which the
 * interposer treats as dma-bufs (their sync ioctls fail, and are recorded all the same):
 * the cost of recording, natively, on a machine without dma-buf heaps. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

static int standin;

static int alloc(int heap, size_t len)
{
    if (standin) {
        int fd = memfd_create("dmabuf-record-standin", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, len) < 0) { perror("memfd"); exit(2); }
        return fd;
    }
    struct dma_heap_allocation_data a = { .len = len, .fd_flags = O_RDWR | O_CLOEXEC };
    if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) < 0) { perror("DMA_HEAP_IOCTL_ALLOC"); exit(2); }
    return a.fd;
}

static void sync_buf(int fd, uint64_t flags)
{
    struct dma_buf_sync s = { .flags = flags };
    if (ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) < 0 && !standin) { perror("DMA_BUF_IOCTL_SYNC"); exit(2); }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && !strcmp(argv[4], "standin"))) {
        fprintf(stderr, "usage: frames fill|process|peek FRAMES FRAME_BYTES [standin]\n");
        return 2;
    }
    standin = argc == 5;
    const char *w = argv[1];
    int frames = atoi(argv[2]);
    size_t len = strtoul(argv[3], NULL, 0);
    int heap = standin ? -1 : open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
    if (heap < 0 && !standin) { perror("/dev/dma_heap/system"); return 2; }
    int in = alloc(heap, len), out = alloc(heap, len);
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, in, 0);
    uint8_t *q = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, out, 0);
    if (p == MAP_FAILED || q == MAP_FAILED) { perror("mmap"); return 2; }
    unsigned long check = 0;
    double t0 = now();
    for (int f = 0; f < frames; f++) {
        if (!strcmp(w, "fill")) {
            sync_buf(in, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
            memset(p, f, len);
            sync_buf(in, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
        } else if (!strcmp(w, "process")) {
            unsigned hist[256] = { 0 };
            sync_buf(in, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
            for (size_t i = 0; i < len; i++) hist[p[i]]++;
            sync_buf(in, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
            sync_buf(out, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE);
            for (size_t i = 0; i < len; i++) q[i] = 255 - (uint8_t)(i + f);
            sync_buf(out, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE);
            check += hist[0];
        } else if (!strcmp(w, "peek")) {
            sync_buf(in, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ);
            for (int i = 0; i < 64; i++) check += p[i];
            sync_buf(in, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
        } else {
            fprintf(stderr, "frames: unknown workload %s\n", w);
            return 2;
        }
    }
    double t = now() - t0;
    printf("%s %d frames of %zu bytes: %.3f s, %.1f frames/s (check %lu)\n", w, frames, len, t, frames / t, check);
    return 0;
}
