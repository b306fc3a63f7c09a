/* Shifts the wall clock of a process by BEFFROI_CLOCK_SHIFT_S seconds (LD_PRELOAD).
 *
 * tests/clock/run-at.sh runs the stack and the test suite under it, to check that the
 * suite passes at any hour: just after midnight in Paris the keys of the day that ended
 * are destroyed, and a test publishing that day's wifi sessions would fail. Only the wall
 * clock moves (CLOCK_REALTIME, gettimeofday, time); monotonic clocks and sleeps do not,
 * so timeouts keep their length. libfaketime's sleep handling broke Python's time.sleep.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long shift_seconds(void) {
    static long shift = 0;
    static int read = 0;
    if (!read) {
        const char *s = getenv("BEFFROI_CLOCK_SHIFT_S");
        shift = s ? atol(s) : 0;
        read = 1;
    }
    return shift;
}

int clock_gettime(clockid_t clock, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *) = 0;
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int r = real(clock, ts);
    if (r == 0 && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE))
        ts->tv_sec += shift_seconds();
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    static int (*real)(struct timeval *, void *) = 0;
    if (!real) real = (int (*)(struct timeval *, void *))dlsym(RTLD_NEXT, "gettimeofday");
    int r = real(tv, tz);
    if (r == 0) tv->tv_sec += shift_seconds();  /* glibc declares tv non-null */
    return r;
}

time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
