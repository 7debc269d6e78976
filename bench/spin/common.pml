/* One cache line of a non-coherent arm64 SoC, as the coherency model has it (spec §2-5):
 * the CPU's write-back cache holds the line INVALID, CLEAN or DIRTY with its bytes
 * (`cache`); memory holds `mem`. The hardware process takes the CPU cache's freedoms at
 * any moment: write back a dirty line, drop a clean one, speculatively fill an absent
 * line of a cacheable mapping. Devices do not snoop: they read and write `mem`. */
#define INVALID 0
#define CLEAN   1
#define DIRTY   2

byte state = INVALID;
byte cache = 0;
byte mem = 0;
bool done = false;

active proctype hardware() {
    do
    :: done -> break
    :: atomic { state == DIRTY -> mem = cache; state = CLEAN }     /* write-back */
    :: atomic { state == CLEAN -> state = INVALID }                /* drop */
    :: atomic { state == INVALID -> cache = mem; state = CLEAN }   /* prefetch */
    od
}

/* CPU store of the whole line through the cached mapping (write-allocate). */
inline cpu_write(v) { atomic { cache = v; state = DIRTY } }
/* CPU load through the cached mapping. */
inline cpu_read(out) { atomic { if :: state == INVALID -> cache = mem; state = CLEAN :: else -> skip fi; out = cache } }
/* Maintenance by address. */
inline clean() { atomic { if :: state == DIRTY -> mem = cache; state = CLEAN :: else -> skip fi } }
inline invalidate() { atomic { state = INVALID } }
