/* Helpers of the recorded C programs: a dma-buf from the system heap, vgem as the device
 * (a PRIME import, a fence attached for a device write or read, signalled when the
 * "device" is done), the sync ioctl, a wait on the buffer's implicit fences. Each program
 * is built twice: as it is (broken) and with -DFIXED, and says in its header what
 * `dmabuf record` reports of each (`record`: the interposer's misuse, live) and what
 * `dmabuf check --platform arm64-noncoherent` finds in the trace (`check`: finding kinds).
 * ci/guest-tests.sh checks both. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>

#define SIZE (64 * 1024)

struct drm_prime_handle { uint32_t handle, flags; int32_t fd; };
struct drm_vgem_fence_attach { uint32_t handle, flags, out_fence, pad; };
struct drm_vgem_fence_signal { uint32_t fence, flags; };
struct drm_version { int maj, min, patch; size_t name_len; char *name; size_t date_len; char *date; size_t desc_len; char *desc; };
#define DRM_IOCTL_VERSION _IOWR('d', 0x00, struct drm_version)
#define DRM_IOCTL_PRIME_FD_TO_HANDLE _IOWR('d', 0x2e, struct drm_prime_handle)
#define DRM_IOCTL_VGEM_FENCE_ATTACH _IOWR('d', 0x41, struct drm_vgem_fence_attach)
#define DRM_IOCTL_VGEM_FENCE_SIGNAL _IOW('d', 0x42, struct drm_vgem_fence_signal)

static inline void die(const char *what) { fprintf(stderr, "%s: %s\n", what, strerror(errno)); exit(2); }

static inline int heap_alloc(size_t len)
{
    struct dma_heap_allocation_data a = { .len = len, .fd_flags = O_RDWR | O_CLOEXEC };
    int heap = open("/dev/dma_heap/system", O_RDONLY | O_CLOEXEC);
    if (heap < 0) die("open /dev/dma_heap/system");
    if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &a) < 0) die("DMA_HEAP_IOCTL_ALLOC");
    close(heap);
    return a.fd;
}

static inline int vgem_open(void)
{
    for (int i = 0; i < 16; i++) {
        char path[64], name[32] = "";
        snprintf(path, sizeof path, "/dev/dri/card%d", i);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0) continue;
        struct drm_version v = { .name_len = sizeof name - 1, .name = name };
        if (ioctl(fd, DRM_IOCTL_VERSION, &v) == 0 && strcmp(name, "vgem") == 0) return fd;
        close(fd);
    }
    errno = ENODEV;
    die("no vgem device (modprobe vgem)");
    return -1;
}

static inline uint32_t gpu_import(int drm, int buf)
{
    struct drm_prime_handle p = { .fd = buf };
    if (ioctl(drm, DRM_IOCTL_PRIME_FD_TO_HANDLE, &p) < 0) die("PRIME_FD_TO_HANDLE");
    return p.handle;
}

/* The device writes (write = 1) or reads the buffer until the fence is signalled. */
static inline void gpu_job(int drm, uint32_t handle, int write)
{
    struct drm_vgem_fence_attach a = { .handle = handle, .flags = write ? 1 : 0 };
    if (ioctl(drm, DRM_IOCTL_VGEM_FENCE_ATTACH, &a) < 0) die("VGEM_FENCE_ATTACH");
    struct drm_vgem_fence_signal s = { .fence = a.out_fence };
    if (ioctl(drm, DRM_IOCTL_VGEM_FENCE_SIGNAL, &s) < 0) die("VGEM_FENCE_SIGNAL");
}

static inline void sync_buf(int buf, uint64_t flags)
{
    struct dma_buf_sync s = { .flags = flags };
    if (ioctl(buf, DMA_BUF_IOCTL_SYNC, &s) < 0) die("DMA_BUF_IOCTL_SYNC");
}

/* Waits for the device's writes (POLLIN: the buffer's write fences). */
static inline void wait_writes(int buf)
{
    struct pollfd p = { .fd = buf, .events = POLLIN };
    if (poll(&p, 1, 5000) != 1) die("poll on the dma-buf");
}

static inline uint8_t *map_buf(int buf)
{
    void *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
    if (p == MAP_FAILED) die("mmap of the dma-buf");
    return p;
}

static inline unsigned sum(const uint8_t *p, size_t len)
{
    unsigned s = 0;
    for (size_t i = 0; i < len; i++) s += p[i];
    return s;
}
