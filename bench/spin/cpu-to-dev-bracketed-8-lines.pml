/* litmus/cpu-to-dev-bracketed-8-lines.dmabuf: the bracketed hand-over over eight lines;
 * the hardware may take any freedom on any line at any moment. Expected: no violation. */
#define N 8
#define INVALID 0
#define CLEAN   1
#define DIRTY   2

byte state[N];
byte cache[N];
byte mem[N];
bool done = false;

active proctype hardware() {
    byte i;
    do
    :: done -> break
    :: else ->
        select(i : 0 .. N - 1);
        if
        :: atomic { state[i] == DIRTY -> mem[i] = cache[i]; state[i] = CLEAN }
        :: atomic { state[i] == CLEAN -> state[i] = INVALID }
        :: atomic { state[i] == INVALID -> cache[i] = mem[i]; state[i] = CLEAN }
        :: skip
        fi
    od
}

active proctype program() {
    byte i;
    for (i : 0 .. N - 1) { atomic { cache[i] = 90; state[i] = DIRTY } }                        /* cpu write */
    for (i : 0 .. N - 1) { atomic { if :: state[i] == DIRTY -> mem[i] = cache[i]; state[i] = CLEAN :: else -> skip fi } } /* cpu end */
    for (i : 0 .. N - 1) { assert(mem[i] == 90) }                                              /* gpu read */
    done = true
}
