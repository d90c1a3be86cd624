/* bcryptprimitives.dll for Wine 8, which lacks it: Rust's standard library (1.78 and later)
 * imports ProcessPrng from it for its random numbers. This forwards to RtlGenRandom
 * (SystemFunction036 in advapi32), which Wine has. `cargo xtask ci` builds it with mingw and puts
 * it beside the Windows test executable; it is never committed as a binary. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x7fffffff ? 0x7fffffff : (ULONG)length;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
